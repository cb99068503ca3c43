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
import operator
from collections.abc import Callable, Sequence

from tensorflow.core.example import example_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.schemas import SERVING
from tandem.schemas.contracts import is_deprecated

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
    values: Callable  # feature -> its value list of the schema's kind (C-level getter)


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
        values=operator.attrgetter(f"{KINDS[feature.type]}.value"),
    )


def _accept_all(_value) -> bool:
    return True


def _reject_all(_value) -> bool:
    return False


def _single_ok(c: FeatureCheck):
    """A predicate: one value that passes every rule of `c` (a C-level test where possible)."""
    if (c.exact_shape and c.min_values != 1) or c.min_values > 1 or c.max_values == 0:
        return _reject_all
    if c.strings is not None:
        return c.strings.__contains__
    if c.bool_ints:
        return frozenset((0, 1)).__contains__
    low = -math.inf if c.low is None else c.low
    high = math.inf if c.high is None else c.high
    if c.float_domain and (not c.allow_inf or c.allow_nan):
        return _reject_all  # rare flags: always the full check
    if c.low is None and c.high is None and not c.float_domain:
        return _accept_all
    return lambda v: low <= v <= high  # NaN fails both comparisons: the full check names it


class Validator:
    """Checks decorated tf.Examples against one environment of a schema."""

    def __init__(self, schema: schema_pb2.Schema, environment: str = SERVING):
        self.environment = environment
        features = list(_environment_features(schema, environment))
        # A deprecated or disabled feature is known (never SCHEMA_NEW_COLUMN) and unchecked,
        # as TFDV leaves it alone.
        self._ignored = frozenset(f.name for f in features if is_deprecated(f))
        self.checks = [_check(f, schema) for f in features if f.name not in self._ignored]
        self._by_name = {c.name: c for c in self.checks}
        self._fast = {c.name: (c.values, c.required, _single_ok(c)) for c in self.checks}
        self._required = [c.name for c in self.checks if c.required]
        self._required_count = len(self._required)

    def scan(self, example: example_pb2.Example) -> tuple[list[str], int]:
        """(violations of the features the example holds, how many required ones it holds).

        One pass. A feature holding one value that its check's predicate accepts (the common
        case) costs a getter, a length and a C-level set or range test; anything else takes
        the full check, which names the violation."""
        out: list[str] = []
        fast = self._fast
        seen = 0
        features = example.features.feature
        for name in features:  # keys, then one lookup: cheaper than items() on a proto map
            feature = features[name]
            f = fast.get(name)
            if f is not None:
                seen += f[1]
                values = f[0](feature)
                if len(values) == 1 and f[2](values[0]):
                    continue
            self._check(name, feature, out)
        return out, seen

    def feature_verdict(self, name: str, feature: example_pb2.Feature) -> tuple[list[str], int]:
        """`scan` for one feature: (its violations, 1 if the schema requires it)."""
        out: list[str] = []
        f = self._fast.get(name)
        if f is not None:
            values = f[0](feature)
            if len(values) == 1 and f[2](values[0]):
                return out, f[1]
        self._check(name, feature, out)
        return out, f[1] if f is not None else 0

    def single_bytes(self, name: str, value: bytes) -> int | None:
        """For a feature holding one bytes value that its check passes: 1 if the schema
        requires the feature, else 0; None when the value needs `feature_verdict`."""
        c = self._by_name.get(name)
        if c is None or c.kind != "bytes_list":
            return None
        f = self._fast[name]
        return f[1] if f[2](value) else None

    def validate(self, example: example_pb2.Example) -> list[str]:
        """The violations of one example, as `feature:ANOMALY_TYPE` (empty when clean)."""
        out, seen = self.scan(example)
        if seen < self._required_count:
            present = example.features.feature
            out.extend(f"{n}:SCHEMA_MISSING_COLUMN" for n in self._required if n not in present)
        return out

    def validate_decorated(self, request: example_pb2.Example, fragments) -> list[str]:
        """The violations of a decorated example given as its request part and the
        decorator's fragments, whose own violations were found once, when they were cached."""
        out, seen = self.scan(request)
        for fragment in fragments:
            out.extend(fragment.violations)
            seen += fragment.required
        if seen < self._required_count:
            present = set(request.features.feature.keys())
            for fragment in fragments:
                present |= fragment.names
            out.extend(f"{n}:SCHEMA_MISSING_COLUMN" for n in self._required if n not in present)
        return out

    def validate_read(self, rows: Sequence[dict], fragments: Sequence[Sequence]
                      ) -> dict[int, list[str]]:
        """`validate_batch` for request parts read at the wire (serving/gateway/wire.py):
        each feature's verdict was found once, when its entry was first read."""
        out = {}
        for i, (row, frags) in enumerate(zip(rows, fragments, strict=True)):
            found: list[str] = []
            seen = 0
            for entry in row.values():
                if entry.violations:
                    found.extend(entry.violations)
                seen += entry.required
            for fragment in frags:
                found.extend(fragment.violations)
                seen += fragment.required
            if seen < self._required_count:
                present = set(row)
                for fragment in frags:
                    present |= fragment.names
                found.extend(f"{n}:SCHEMA_MISSING_COLUMN" for n in self._required
                             if n not in present)
            if found:
                out[i] = found
        return out

    def _check(self, name: str, feature: example_pb2.Feature, out: list[str]) -> None:
        c = self._by_name.get(name)
        if c is None:
            if name not in self._ignored:
                out.append(f"{name}:SCHEMA_NEW_COLUMN")
            return
        # The list of the schema's kind; only when it is empty can the value be of another
        # kind (a oneof), so only then is the kind asked for.
        values = c.values(feature)
        n = len(values)
        if not n and feature.WhichOneof("kind") not in (None, c.kind):
            out.append(f"{name}:UNEXPECTED_DATA_TYPE")
            return
        if c.exact_shape:
            if n != c.min_values:
                out.append(f"{name}:INVALID_FEATURE_SHAPE")
        elif n < c.min_values:
            out.append(f"{name}:FEATURE_TYPE_LOW_NUMBER_VALUES")
        elif 0 <= c.max_values < n:
            out.append(f"{name}:FEATURE_TYPE_HIGH_NUMBER_VALUES")
        if not n:
            return
        lo, hi = min(values), max(values)
        if c.strings is not None:
            if any(v not in c.strings for v in values):
                out.append(f"{name}:ENUM_TYPE_UNEXPECTED_STRING_VALUES")
        elif c.float_domain:
            self._floats(c, values, out)
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

    def validate_batch(self, examples: Sequence[example_pb2.Example],
                       fragments: Sequence[Sequence] | None = None) -> dict[int, list[str]]:
        """Violations by example index, for the examples that have any. With `fragments`
        (the decorator's, per example) the examples are request parts, checked with
        `validate_decorated`."""
        out = {}
        for i, example in enumerate(examples):
            found = (self.validate(example) if fragments is None
                     else self.validate_decorated(example, fragments[i]))
            if found:
                out[i] = found
        return out

