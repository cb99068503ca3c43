"""Schema contracts: infer a schema from statistics, propose numeric ranges, add tandem's
contracts (environments, drift/skew comparators, dataset constraints), and diff two schemas
so that schema changes are reviewed like code."""

from __future__ import annotations

import difflib
import math

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from tandem.schemas import SERVING, TRAINING
from tandem.schemas.contracts import is_categorical
from tandem.schemas.identifiers import declare_identifiers, declared_identifiers, identifiers
from tandem.schemas.statistics import common_stats, feature_name

OPEN_VOCABULARY = "open vocabulary"  # a string feature's annotation tag: no closed domain
GUARD_BAND = 0.1  # fraction of the observed range added on each side of a numeric domain
DRIFT_THRESHOLD = 0.1
SKEW_THRESHOLD = 0.1
MIN_EXAMPLES_FRACTION = 0.1  # proposed min_examples_count, as a fraction of the examples seen


def _numeric_stats(
    stats: statistics_pb2.DatasetFeatureStatistics, name: str
) -> statistics_pb2.NumericStatistics | None:
    for feature in stats.features:
        path = ".".join(feature.path.step) if feature.HasField("path") else feature.name
        if path == name and feature.HasField("num_stats"):
            return feature.num_stats
    return None


def _observed_range(num: statistics_pb2.NumericStatistics) -> tuple[float, float]:
    """Lowest and highest value from the quantiles histogram (falls back to min/max)."""
    for hist in num.histograms:
        if hist.type == statistics_pb2.Histogram.QUANTILES and hist.buckets:
            return hist.buckets[0].low_value, hist.buckets[-1].high_value
    return num.min, num.max


def guarded_range(low: float, high: float, guard: float = GUARD_BAND) -> tuple[float, float]:
    """Widen [low, high] by `guard` of its width on each side; never below 0 for data that
    was never negative (a negative age or duration must stay an anomaly)."""
    band = (high - low) * guard
    lo, hi = low - band, high + band
    if low >= 0:
        lo = max(lo, 0.0)
    return lo, hi


def propose_numeric_ranges(
    schema: schema_pb2.Schema, stats: statistics_pb2.DatasetFeatureStatistics
) -> schema_pb2.Schema:
    """Schema transformation for tfdv.infer_schema: TFDV leaves numeric domains empty;
    propose int_domain/float_domain from the observed quantiles plus a guard band."""
    for feature in schema.feature:
        if feature.WhichOneof("domain_info") is not None:
            continue
        num = _numeric_stats(stats, feature.name)
        if num is None:
            continue
        lo, hi = guarded_range(*_observed_range(num))
        if feature.type == schema_pb2.INT:
            # Integers take the band rounded to whole steps, so 0/1 flags stay 0..1.
            feature.int_domain.min = int(math.floor(lo + 0.5))
            feature.int_domain.max = int(math.floor(hi + 0.5))
        elif feature.type == schema_pb2.FLOAT:
            feature.float_domain.min = float(f"{lo:.6g}")
            feature.float_domain.max = float(f"{hi:.6g}")
    return schema


def apply_contracts(
    schema: schema_pb2.Schema,
    label: str,
    problem_type: str,
    num_examples: int,
) -> schema_pb2.Schema:
    """Add tandem's contracts: TRAINING/SERVING environments with the label absent at
    serving, a label domain for the problem type, a drift comparator on every feature and
    a skew comparator on every serving feature (identifiers get neither: they are never
    compared), and a minimum example count."""
    names = [f.name for f in schema.feature]
    if label not in names:
        raise ValueError(f"label '{label}' is not a feature of the data (features: {names})")
    del schema.default_environment[:]
    schema.default_environment.extend([TRAINING, SERVING])
    ids = set(declared_identifiers(schema))
    for feature in schema.feature:
        is_label = feature.name == label
        if is_label:
            del feature.not_in_environment[:]
            feature.not_in_environment.append(SERVING)
            if problem_type == "binary_classification" and feature.type == schema_pb2.INT:
                feature.int_domain.Clear()
                feature.int_domain.min, feature.int_domain.max = 0, 1
                feature.int_domain.is_categorical = True
            elif problem_type == "multiclass_classification" and feature.type == schema_pb2.INT:
                feature.int_domain.is_categorical = True
        if feature.name in ids:
            feature.ClearField("drift_comparator")
            feature.ClearField("skew_comparator")
            continue
        comparator = feature.drift_comparator
        comparator.Clear()
        if is_categorical(feature):
            comparator.infinity_norm.threshold = DRIFT_THRESHOLD
        else:
            comparator.jensen_shannon_divergence.threshold = DRIFT_THRESHOLD
        feature.ClearField("skew_comparator")
        if not is_label:
            if is_categorical(feature):
                feature.skew_comparator.infinity_norm.threshold = SKEW_THRESHOLD
            else:
                feature.skew_comparator.jensen_shannon_divergence.threshold = SKEW_THRESHOLD
    schema.dataset_constraints.min_examples_count = max(
        1, int(num_examples * MIN_EXAMPLES_FRACTION)
    )
    return schema


def allow_empty_cells(schema: schema_pb2.Schema) -> schema_pb2.Schema:
    """CsvExampleGen writes an empty CSV cell as an empty value list (not an absent
    feature), so a column with missing cells may hold zero values."""
    for feature in schema.feature:
        if feature.HasField("value_count") and not feature.HasField("shape"):
            feature.value_count.min = 0
    return schema


def _values_seen(datasets) -> dict[str, int]:
    """{feature: examples carrying it plus values it holds}, over every dataset."""
    seen: dict[str, int] = {}
    for dataset in datasets:
        for f in dataset.features:
            common = common_stats(f)
            name = feature_name(f)
            seen[name] = seen.get(name, 0) + common.num_non_missing + common.tot_num_values
    return seen


def disable_empty_features(
    schema: schema_pb2.Schema, datasets, label: str
) -> list[str]:
    """A column with no values in any example of the data (an empty CSV column) can teach a
    model nothing: its lifecycle stage becomes DISABLED, which TFDV's validation, the
    gateway's validator, the monitor and tandem's feature plan (`features.default_skip`) all
    leave alone; it stays in the schema, so the data still matches it. The label is never
    disabled (an empty label is an error of its own). Returns the features disabled."""
    seen = _values_seen(datasets)
    disabled = []
    for feature in schema.feature:
        if seen.get(feature.name) == 0 and feature.name != label and \
                feature.lifecycle_stage == schema_pb2.UNKNOWN_STAGE:
            feature.lifecycle_stage = schema_pb2.DISABLED
            feature.ClearField("drift_comparator")
            feature.ClearField("skew_comparator")
            disabled.append(feature.name)
    return disabled


def mark_open_vocabularies(schema: schema_pb2.Schema, datasets, label: str) -> list[str]:
    """A string feature with values but too many distinct ones for TFDV to propose a domain
    (a date, free text) gets `annotation { tag: "open vocabulary" }`: the model reads it
    through the vocabulary Transform learns, unseen values going to an out-of-vocabulary
    bucket, and the Trainer's feature_rules check (Data 4) accepts that in place of a closed
    domain. Identifiers are never marked (an id is not a feature, open or closed), nor is a
    feature whose domain a reviewer deleted from a curated schema: only a proposal, made from
    the statistics, marks. Returns the features marked."""
    seen = _values_seen(datasets)
    texts = {feature_name(f) for d in datasets for f in d.features if f.HasField("string_stats")}
    # Not an id, not bytes that are no text, not numbers a marker turned into text (propose
    # says to fix those in the data).
    excluded = set(declared_identifiers(schema)) | set(numbers_with_markers(schema, datasets))
    marked = []
    for feature in schema.feature:
        if feature.type == schema_pb2.BYTES and feature.name != label and \
                feature.name in texts and feature.name not in excluded and \
                feature.WhichOneof("domain_info") is None and \
                seen.get(feature.name, 0) > 0 and OPEN_VOCABULARY not in feature.annotation.tag:
            feature.annotation.tag.append(OPEN_VOCABULARY)
            marked.append(feature.name)
    return marked


# What a CSV writes for a missing number (R, spreadsheets, hand-kept files), compared
# case-insensitively; any other word among numbers is a value (a size "XL", a code "X9").
MISSING_MARKERS = frozenset({"na", "n/a", "null", "none", "missing", "?", "-", ".", "#n/a"})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def numbers_with_markers(schema: schema_pb2.Schema, datasets) -> dict[str, list[str]]:
    """String features whose values are numbers but for a missing-value marker ("NA", "?",
    "-"; MISSING_MARKERS): a CSV reader types a column as text when one cell is not a number,
    so such a column reaches the model as categories, not a number. {feature: its markers},
    for `schema propose` to say what to change in the data (write missing cells empty).
    Judged on the schema's string domain, else the statistics' top values (a marker rarer
    than the top values goes unseen), and only with at least 10 distinct numbers."""
    seen: dict[str, list[str]] = {}
    for dataset in datasets:
        for f in dataset.features:
            if f.HasField("string_stats"):
                seen.setdefault(feature_name(f), []).extend(
                    v.value for v in f.string_stats.top_values)
    domains = {d.name: list(d.value) for d in schema.string_domain}
    found = {}
    for feature in schema.feature:
        if feature.type != schema_pb2.BYTES:
            continue
        values = domains.get(feature.domain) if feature.domain else None
        values = sorted(set(values if values else seen.get(feature.name, [])))
        others = [v for v in values if not _is_number(v)]
        markers = [v for v in others if v.strip().lower() in MISSING_MARKERS]
        if len(values) - len(others) >= 10 and markers and markers == others:
            found[feature.name] = markers
    return found


def propose_schema(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    label: str,
    problem_type: str,
    data_format: str = "tfrecord",
    curated: schema_pb2.Schema | None = None,
) -> schema_pb2.Schema:
    """Infer a schema with numeric ranges and tandem's contracts from statistics. The
    identifiers are those the `curated` schema declares and any the data shows."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(
        stats, infer_feature_shape=True, schema_transformations=[propose_numeric_ranges]
    )
    declare_identifiers(schema, identifiers(curated, stats.datasets[:1]))
    if data_format == "csv":
        allow_empty_cells(schema)
    schema = apply_contracts(schema, label, problem_type, stats.datasets[0].num_examples)
    disable_empty_features(schema, stats.datasets, label)
    mark_open_vocabularies(schema, stats.datasets, label)
    return schema


def _feature_lines(feature: schema_pb2.Feature) -> list[str]:
    return text_format.MessageToString(feature).splitlines()


def diff_schemas(old: schema_pb2.Schema, new: schema_pb2.Schema) -> list[str]:
    """A readable, per-feature diff: what a reviewer needs to approve a schema change."""
    lines: list[str] = []
    old_features = {f.name: f for f in old.feature}
    new_features = {f.name: f for f in new.feature}
    for name in sorted(new_features.keys() - old_features.keys()):
        lines.append(f"+ feature {name} (added)")
        lines += [f"+     {line}" for line in _feature_lines(new_features[name])]
    for name in sorted(old_features.keys() - new_features.keys()):
        lines.append(f"- feature {name} (removed)")
    for name in sorted(old_features.keys() & new_features.keys()):
        a, b = _feature_lines(old_features[name]), _feature_lines(new_features[name])
        if a == b:
            continue
        lines.append(f"~ feature {name}")
        for line in difflib.unified_diff(a, b, lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            lines.append(f"    {line[0]} {line[1:].strip()}")
    old_rest, new_rest = schema_pb2.Schema(), schema_pb2.Schema()
    old_rest.CopyFrom(old)
    new_rest.CopyFrom(new)
    old_rest.ClearField("feature")
    new_rest.ClearField("feature")
    a = text_format.MessageToString(old_rest).splitlines()
    b = text_format.MessageToString(new_rest).splitlines()
    if a != b:
        lines.append("~ dataset-level settings")
        for line in difflib.unified_diff(a, b, lineterm="", n=0):
            if not line.startswith(("---", "+++", "@@")):
                lines.append(f"    {line[0]} {line[1:].strip()}")
    return lines
