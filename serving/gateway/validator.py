"""Gateway: the curated schema compiled into a per-request validator.

`compile_schema` reads the schema's SERVING environment once and turns every feature into a
small check of what TFDV's per-example validation (`validate_instance`) checks: the value type,
presence, value count or shape, int/float domain ranges, NaN and Inf, string and bool domains,
and features the schema does not know. A violation is `feature:ANOMALY_TYPE`, with TFDV's
anomaly type names. Where the two name a case differently (tests/serving/gateway/
test_validator.py lists them): NaN is FLOAT_TYPE_HAS_NAN here, where TFDV reports it through
the domain minimum (FLOAT_TYPE_SMALL_FLOAT); an int outside a bool_domain is BOOL_TYPE_BIG_INT
or BOOL_TYPE_SMALL_INT here, which TFDV 1.16 does not check per example.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from tensorflow.core.example import example_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from schemas import SERVING

KINDS = {schema_pb2.INT: "int64_list", schema_pb2.FLOAT: "float_list",
         schema_pb2.BYTES: "bytes_list"}


@dataclasses.dataclass(frozen=True)
class FeatureCheck:
    name: str
    kind: str  # the Feature oneof the schema type needs
    required: bool
    min_values: int
    max_values: int  # -1: unbounded
    exact_shape: bool  # a fixed `shape`: a wrong count is INVALID_FEATURE_SHAPE
    low: float | None
    high: float | None
    float_domain: bool
    allow_nan: bool
    allow_inf: bool
    bool_ints: bool
    strings: frozenset[bytes] | None
    allowed_rate: float  # the violation share the schema's constraints tolerate

    @property
    def has_inf_check(self) -> bool:
        return not self.allow_inf


def _environment_features(schema: schema_pb2.Schema, environment: str):
    for feature in schema.feature:
        if environment in feature.not_in_environment:
            continue
        if feature.in_environment and environment not in feature.in_environment:
            continue
        if not feature.in_environment and schema.default_environment and \
                environment not in schema.default_environment:
            continue
        yield feature


def _check(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> FeatureCheck:
    if feature.type not in KINDS:
        raise ValueError(f"feature '{feature.name}': type "
                         f"{schema_pb2.FeatureType.Name(feature.type)} cannot be validated")
    presence = feature.presence.min_fraction if feature.HasField("presence") else 0.0
    shape = None
    if feature.HasField("shape"):
        shape = math.prod(d.size for d in feature.shape.dim)
    min_values = max_values = -1
    if shape is not None:
        min_values = max_values = shape
    elif feature.HasField("value_count"):
        min_values = feature.value_count.min
        max_values = feature.value_count.max if feature.value_count.max else -1
    domain = feature.WhichOneof("domain_info")
    low = high = None
    allow_nan = allow_inf = True
    strings = None
    if domain == "int_domain":
        d = feature.int_domain
        low = d.min if d.HasField("min") else None
        high = d.max if d.HasField("max") else None
    elif domain == "float_domain":
        d = feature.float_domain
        low = d.min if d.HasField("min") else None
        high = d.max if d.HasField("max") else None
        # A range excludes NaN; TFDV's flags forbid NaN or Inf outright.
        allow_nan = not d.disallow_nan and low is None and high is None
        allow_inf = not d.disallow_inf
    elif domain in ("domain", "string_domain"):
        values = feature.string_domain.value if domain == "string_domain" else next(
            (d.value for d in schema.string_domain if d.name == feature.domain), None)
        if values is None:
            raise ValueError(f"feature '{feature.name}': string domain '{feature.domain}' "
                             "is not in the schema")
        strings = frozenset(v.encode() for v in values)
    mass = 1.0
    if feature.HasField("distribution_constraints"):
        mass = feature.distribution_constraints.min_domain_mass or 1.0
    return FeatureCheck(
        name=feature.name, kind=KINDS[feature.type],
        required=presence >= 1.0 or shape is not None,
        min_values=min_values, max_values=max_values, exact_shape=shape is not None,
        low=low, high=high, float_domain=domain == "float_domain",
        allow_nan=allow_nan, allow_inf=allow_inf,
        bool_ints=domain == "bool_domain" and feature.type == schema_pb2.INT,
        strings=strings,
        allowed_rate=max(1.0 - presence, 1.0 - mass if strings is not None else 0.0),
    )


class Validator:
    """Checks decorated tf.Examples against one environment of a schema."""

    def __init__(self, schema: schema_pb2.Schema, environment: str = SERVING):
        self.environment = environment
        self.checks = [_check(f, schema) for f in _environment_features(schema, environment)]
        self._by_name = {c.name: c for c in self.checks}
        self._required = [c.name for c in self.checks if c.required]
        self._required_count = len(self._required)

    def validate(self, example: example_pb2.Example) -> list[str]:
        """The violations of one example, as `feature:ANOMALY_TYPE` (empty when clean).

        One pass over the example's features; single values (the common case) are compared
        directly, since iterating a protobuf repeated field costs more than the check."""
        out: list[str] = []
        checks = self._by_name
        seen = 0
        for name, feature in example.features.feature.items():
            c = checks.get(name)
            if c is None:
                out.append(f"{name}:SCHEMA_NEW_COLUMN")
                continue
            seen += c.required
            kind = feature.WhichOneof("kind")
            if kind is not None and kind != c.kind:
                out.append(f"{name}:UNEXPECTED_DATA_TYPE")
                continue
            values = getattr(feature, c.kind).value
            n = len(values)
            if c.exact_shape:
                if n != c.min_values:
                    out.append(f"{name}:INVALID_FEATURE_SHAPE")
            elif n < c.min_values:
                out.append(f"{name}:FEATURE_TYPE_LOW_NUMBER_VALUES")
            elif 0 <= c.max_values < n:
                out.append(f"{name}:FEATURE_TYPE_HIGH_NUMBER_VALUES")
            if n == 1:
                lo = hi = values[0]
            elif n:
                lo, hi = min(values), max(values)
            else:
                continue
            if c.strings is not None:
                if (lo if n == 1 else None) not in c.strings and any(
                        v not in c.strings for v in values):
                    out.append(f"{name}:ENUM_TYPE_UNEXPECTED_STRING_VALUES")
            elif c.float_domain:
                if lo != lo or hi != hi or c.has_inf_check:
                    self._floats(c, values, out)
                else:
                    if c.low is not None and lo < c.low:
                        out.append(f"{name}:FLOAT_TYPE_SMALL_FLOAT")
                    if c.high is not None and hi > c.high:
                        out.append(f"{name}:FLOAT_TYPE_BIG_FLOAT")
            elif c.bool_ints:
                if lo < 0:
                    out.append(f"{name}:BOOL_TYPE_SMALL_INT")
                if hi > 1:
                    out.append(f"{name}:BOOL_TYPE_BIG_INT")
            else:
                if c.low is not None and lo < c.low:
                    out.append(f"{name}:INT_TYPE_SMALL_INT")
                if c.high is not None and hi > c.high:
                    out.append(f"{name}:INT_TYPE_BIG_INT")
        if seen < self._required_count:
            present = example.features.feature
            out.extend(f"{n}:SCHEMA_MISSING_COLUMN" for n in self._required if n not in present)
        return out

    @staticmethod
    def _floats(c: FeatureCheck, values, out: list[str]) -> None:
        finite = [v for v in values if v == v]  # NaN != NaN
        if len(finite) != len(values) and not c.allow_nan:
            out.append(f"{c.name}:FLOAT_TYPE_HAS_NAN")
        if not finite:
            return
        lo, hi = min(finite), max(finite)
        if not c.allow_inf and (math.isinf(lo) or math.isinf(hi)):
            out.append(f"{c.name}:FLOAT_TYPE_HAS_INF")
        if c.low is not None and lo < c.low:
            out.append(f"{c.name}:FLOAT_TYPE_SMALL_FLOAT")
        if c.high is not None and hi > c.high:
            out.append(f"{c.name}:FLOAT_TYPE_BIG_FLOAT")

    def validate_batch(self, examples: Sequence[example_pb2.Example]) -> dict[int, list[str]]:
        """Violations by example index, for the examples that have any."""
        out = {}
        for i, example in enumerate(examples):
            found = self.validate(example)
            if found:
                out[i] = found
        return out

