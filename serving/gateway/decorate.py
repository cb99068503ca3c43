"""Gateway: decoration, the one join of request examples with the feature sources.

The data generator builds its training examples with `Decorator` and the gateway builds the
examples the model receives with it, so for the same keys the two are byte-identical.

How: each entity's columns are serialized once into a *fragment*, a tf.Example holding only
those columns, and cached. A decorated example is the request example's bytes followed by
one fragment per join. Concatenated protobuf messages are one message whose fields merge
(the maps of features join), which is how every tf.Example reader sees it: TF's parsers,
tfx_bsl's decoder, protobuf itself. So decorating costs a parse of the request (for its
keys) and a concatenation, not a rebuild of the example. A batch costs one source lookup per
join for the keys not in the cache, whatever its size. A request that carries a joined
column itself has it removed first: the source is the truth.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from tensorflow.core.example import example_pb2

from tandem.serving.errors import InvalidArgument, NotFound
from tandem.serving.gateway.sources import FeatureSource, Join

FILL, REJECT = "default", "reject"


@dataclasses.dataclass
class Decoration:
    """What decoration did to a batch: per example, the entities no source knew, and the
    fragments appended (for a validator to reuse what it knows of them)."""

    unknown: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    fragments: list[list[Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """One entity's columns as a serialized tf.Example, and what a validator found in it."""

    data: bytes
    names: frozenset[str]
    violations: tuple[str, ...] = ()
    required: int = 0  # how many of the schema's required features it holds


def _set(feature: example_pb2.Feature, kind: str, value: Any) -> None:
    if kind == "INT":
        feature.int64_list.value.append(value)
    elif kind == "FLOAT":
        feature.float_list.value.append(value)
    else:
        feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)


def fragment_example(columns: Sequence[str], kinds: Sequence[str], row: Sequence[Any]
                     ) -> example_pb2.Example:
    """A tf.Example of one entity's columns; a NULL column stays absent, as in the source."""
    example = example_pb2.Example()
    features = example.features.feature
    for column, kind, value in zip(columns, kinds, row, strict=True):
        if value is not None:
            _set(features[column], kind, value)
    return example


def _key(first: bytes | None, kind: str | None, join: Join, index: int) -> str:
    """The entity key from the key feature's first bytes value (None: it has none) and the
    kind of value it holds."""
    if first is None:
        if kind in ("int64_list", "float_list"):
            raise InvalidArgument(f"example {index}: entity key '{join.key}' must be a string "
                                  f"(bytes_list), got {kind}")
        raise InvalidArgument(f"example {index}: entity key '{join.key}' is missing")
    try:
        return first.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"example {index}: entity key '{join.key}' is not UTF-8") from None


def key_of(example: example_pb2.Example, join: Join, index: int) -> str:
    features = example.features.feature
    feature = features[join.key] if join.key in features else None  # .get costs more
    if feature is None:
        return _key(None, None, join, index)
    values = feature.bytes_list.value
    return _key(values[0] if values else None, feature.WhichOneof("kind"), join, index)


def key_of_entry(row: dict, join: Join, index: int) -> str:
    """`key_of` for a request example read at the wire (serving/gateway/wire.py)."""
    entry = row.get(join.key)
    return _key(None, None, join, index) if entry is None else _key(
        entry.first, entry.kind, join, index)


class Decorator:
    """Joins request examples with a feature source (see the module docstring).

    `validator`, when given, checks each fragment once as it is cached, so the gateway's
    per-request validation only checks the request's own features. Cached fragments live
    `cache_s` seconds (0: no cache), so a source updated in place (Redis) is seen again."""

    def __init__(self, joins: Sequence[Join], source: FeatureSource | None,
                 on_missing: str = FILL, defaults: dict[str, Any] | None = None,
                 validator=None, cache_s: float = 60.0, cache_entries: int = 500_000):
        self.joins, self.source, self.on_missing = list(joins), source, on_missing
        self.validator, self.cache_s, self.cache_entries = validator, cache_s, cache_entries
        self.joined = frozenset(c for j in self.joins for c in j.columns)
        # A joined column's name as a map key on the wire (key field, its length, the name):
        # absent from a request's bytes, the request cannot carry that column.
        self._joined_keys = re.compile(b"|".join(
            re.escape(b"\n" + bytes([len(c.encode())]) + c.encode())
            for c in sorted(self.joined) if len(c.encode()) < 128)) if self.joined else None
        self._kinds = [[source.types(j.table)[c] for c in j.columns] for j in self.joins] \
            if self.joins else []
        self._defaults = [self._fragment(j, k, tuple((defaults or {}).get(c) for c in j.columns))
                          for j, k in zip(self.joins, self._kinds, strict=True)]
        self._cache: list[dict[str, Fragment]] = [{} for _ in self.joins]
        self._cleared = time.monotonic()
        self.lookups = 0
        # Called with (table, seconds) for each join of each request: the cost of a source,
        # which `tandem score` (Data 3) attributes to the features it supplies.
        self.on_source: Callable[[str, float], None] | None = None

    def _fragment(self, join: Join, kinds: list[str], row: Sequence[Any]) -> Fragment:
        example = fragment_example(join.columns, kinds, row)
        names = frozenset(example.features.feature.keys())
        if self.validator is None:
            return Fragment(example.SerializeToString(deterministic=True), names)
        violations, required = self.validator.scan(example)
        return Fragment(example.SerializeToString(deterministic=True), names,
                        tuple(violations), required)

    def _fragments(self, j: int, keys: list[str]) -> list[Fragment | None]:
        cache = self._cache[j]
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            join, kinds = self.joins[j], self._kinds[j]
            self.lookups += 1
            found = self.source.lookup(join, missing)  # one lookup per join per batch
            if len(cache) + len(found) > self.cache_entries:
                cache.clear()
            fresh = {k: self._fragment(join, kinds, row) for k, row in found.items()}
            if self.cache_s > 0:
                cache.update(fresh)
            else:
                return [cache.get(k) or fresh.get(k) for k in keys]
        return [cache.get(k) for k in keys]

    def decorate(self, examples: Sequence[example_pb2.Example],
                 serialized: Sequence[bytes] | None = None) -> tuple[list[bytes], Decoration]:
        """(decorated serialized examples, what happened) for parsed request examples;
        `serialized` are their bytes when the caller has them (else they are serialized)."""
        if serialized is None or self.joined:
            serialized = [self._own(e, serialized[i] if serialized is not None else None)
                          for i, e in enumerate(examples)]
        return self._join(serialized, lambda join: [key_of(e, join, i)
                                                    for i, e in enumerate(examples)])

    def decorate_read(self, rows: Sequence[dict], serialized: Sequence[bytes]
                      ) -> tuple[list[bytes], Decoration]:
        """`decorate` for request examples read at the wire (serving/gateway/wire.py), which
        carry no joined column (`carries_joined`)."""
        return self._join(serialized, lambda join: [key_of_entry(row, join, i)
                                                    for i, row in enumerate(rows)])

    def decorate_keys(self, keys: dict[str, list[str]], serialized: Sequence[bytes]
                      ) -> tuple[list[bytes], Decoration]:
        """`decorate` for request examples that carry no joined column, given each join
        key's value per example ({key: [value, ...]})."""
        return self._join(serialized, lambda join: keys[join.key])

    def carries_joined(self, row: dict) -> bool:
        return not self.joined.isdisjoint(row)

    def _join(self, serialized: Sequence[bytes], keys_of: Callable[[Join], list[str]]
              ) -> tuple[list[bytes], Decoration]:
        """Each example's bytes followed by its entities' fragments; `keys_of(join)` gives
        the examples' keys for a join, asked join by join (a missing key of the second join
        is reported after the first join's unknown entities, as it always was)."""
        if self.cache_s > 0 and time.monotonic() - self._cleared > self.cache_s:
            self._cache = [{} for _ in self.joins]
            self._cleared = time.monotonic()
        result = Decoration()
        parts = [[s] for s in serialized]
        result.fragments = [[] for _ in serialized]
        for j, join in enumerate(self.joins):
            started = time.perf_counter()
            keys = keys_of(join)
            for i, (key, frag) in enumerate(zip(keys, self._fragments(j, keys), strict=True)):
                if frag is None:
                    if self.on_missing == REJECT:
                        raise NotFound(f"{join.key} '{key}' is not in the feature source "
                                       f"(table '{join.table}')")
                    result.unknown.setdefault(i, []).append(f"{join.key}={key}")
                    frag = self._defaults[j]
                parts[i].append(frag.data)
                result.fragments[i].append(frag)
            if self.on_source is not None:
                self.on_source(join.table, time.perf_counter() - started)
        return [b"".join(p) for p in parts], result

    def _own(self, example: example_pb2.Example, data: bytes | None) -> bytes:
        """The request's bytes without any joined column it carried."""
        if data is not None and self._joined_keys is not None and \
                not self._joined_keys.search(data):
            return data
        features = example.features.feature
        if any(c in features for c in self.joined):
            for c in self.joined:
                if c in features:
                    del features[c]
            return example.SerializeToString(deterministic=True)
        return data if data is not None else example.SerializeToString(deterministic=True)


def parse_examples(serialized: Sequence[bytes], where: str = "input") -> list[example_pb2.Example]:
    """Parse request examples; bytes that are not a tf.Example are INVALID_ARGUMENT."""
    examples = []
    for i, data in enumerate(serialized):
        example = example_pb2.Example()
        try:
            example.ParseFromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, by any implementation
            raise InvalidArgument(f"{where} value {i} is not a serialized tf.Example") from None
        examples.append(example)
    return examples
