"""Gateway: decoration, the one join of request examples with the feature sources.

The data generator builds its training examples with this function and the gateway builds the
examples the model receives with it, so for the same keys the two are byte-identical
(serialized deterministically). A batch of examples costs one lookup per join, whatever its
size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tensorflow.core.example import example_pb2

from serving.errors import InvalidArgument, NotFound
from serving.gateway.sources import FeatureSource, Join

FILL, REJECT = "default", "reject"


@dataclasses.dataclass
class Decoration:
    """What decoration did to a batch: per example, the entities no source knew."""

    unknown: dict[int, list[str]] = dataclasses.field(default_factory=dict)


def _key(example: example_pb2.Example, join: Join, index: int) -> str:
    feature = example.features.feature.get(join.key)
    if feature is None or not feature.bytes_list.value:
        if feature is not None and feature.WhichOneof("kind") in ("int64_list", "float_list"):
            raise InvalidArgument(f"example {index}: entity key '{join.key}' must be a string "
                                  f"(bytes_list), got {feature.WhichOneof('kind')}")
        raise InvalidArgument(f"example {index}: entity key '{join.key}' is missing")
    try:
        return feature.bytes_list.value[0].decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"example {index}: entity key '{join.key}' is not UTF-8") from None


def _set(feature: example_pb2.Feature, kind: str, value: Any) -> None:
    if kind == "INT":
        feature.int64_list.value.append(value)
    elif kind == "FLOAT":
        feature.float_list.value.append(value)
    else:
        feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)


def decorate(
    examples: Sequence[example_pb2.Example],
    joins: Sequence[Join],
    source: FeatureSource | None,
    on_missing: str = FILL,
    defaults: dict[str, Any] | None = None,
) -> Decoration:
    """Add each join's columns to the examples, in place.

    A NULL column stays absent, as in the source. An entity no source knows is rejected
    (NotFound naming the key) under `reject`, or under `default` gets `defaults` for its
    columns and is reported in the result, so the request can be flagged."""
    result = Decoration()
    if not joins:
        return result
    for join in joins:
        keys = [_key(e, join, i) for i, e in enumerate(examples)]
        found = source.lookup(join, keys)
        types = source.types(join.table)
        kinds = [types[c] for c in join.columns]
        for i, (example, key) in enumerate(zip(examples, keys, strict=True)):
            row = found.get(key)
            if row is None:
                if on_missing == REJECT:
                    raise NotFound(f"{join.key} '{key}' is not in the feature source "
                                   f"(table '{join.table}')")
                result.unknown.setdefault(i, []).append(f"{join.key}={key}")
                row = tuple((defaults or {}).get(c) for c in join.columns)
            features = example.features.feature
            for column, kind, value in zip(join.columns, kinds, row, strict=True):
                if value is None:
                    continue
                feature = features[column]
                feature.Clear()
                _set(feature, kind, value)
    return result


def decorate_serialized(
    serialized: Sequence[bytes], joins: Sequence[Join], source: FeatureSource | None,
    on_missing: str = FILL, defaults: dict[str, Any] | None = None,
) -> tuple[list[bytes], list[example_pb2.Example], Decoration]:
    """Parse, decorate and re-serialize (deterministically) a batch of tf.Examples."""
    examples = []
    for i, data in enumerate(serialized):
        example = example_pb2.Example()
        try:
            example.ParseFromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, by any implementation
            raise InvalidArgument(f"example {i} is not a serialized tf.Example") from None
        examples.append(example)
    result = decorate(examples, joins, source, on_missing, defaults)
    return [e.SerializeToString(deterministic=True) for e in examples], examples, result
