"""Feature plan: how each schema feature is treated by Transform and the Trainer.

The plan is derived from the curated schema plus per-feature options in the dataset config, so
the same preprocessing_fn and run_fn fit any tabular dataset. It travels to the executors as
plain JSON in `custom_config`, which keeps pipeline wiring free of TensorFlow code.
"""

from __future__ import annotations

from typing import Any

from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.schemas.contracts import is_categorical
from tandem.schemas.identifiers import TAG as IDENTIFIER

NUMERIC, CATEGORICAL, BUCKETIZE, SKIP = "numeric", "categorical", "bucketize", "skip"
DEFAULT_FREQUENCY_THRESHOLD = 5
DEFAULT_OOV_BUCKETS = 1
DEFAULT_BUCKETS = 10
# Lifecycle stages of a feature the model may read (Data 4); at any other stage (PLANNED,
# ALPHA, DEPRECATED, DEBUG_ONLY, DISABLED) a feature is skipped unless the config names a kind.
SERVED_STAGES = (schema_pb2.UNKNOWN_STAGE, schema_pb2.BETA, schema_pb2.PRODUCTION)


def default_skip(feature: schema_pb2.Feature) -> str | None:
    """Why a feature is not a model input by default, or None: an identifier names an example
    and carries no signal that generalizes (its values are new in every dataset; a kind named
    in the config makes it an input), and a feature at a lifecycle stage short of production
    or deprecated (`tandem schema propose` disables a column with no values in the data) is
    not one the model may read (only the schema can change that)."""
    if IDENTIFIER in feature.annotation.tag:
        return "an identifier"
    if feature.lifecycle_stage not in SERVED_STAGES:
        return f"lifecycle stage {schema_pb2.LifecycleStage.Name(feature.lifecycle_stage)}"
    if feature.deprecated:
        return "deprecated"
    return None


def feature_plan(
    schema: schema_pb2.Schema,
    label: str,
    problem_type: str,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """{"label": ..., "problem_type": ..., "features": {name: {"kind": ..., ...}}}.

    Defaults: identifiers and features short of a production lifecycle stage are skipped
    (`default_skip`); strings and categorical ints (int_domain.is_categorical or bool_domain)
    get a vocabulary; other numbers are z-scored. `options[name]` may set kind (numeric,
    categorical, bucketize, skip), num_buckets, frequency_threshold, num_oov_buckets.
    """
    options = options or {}
    names = {f.name for f in schema.feature}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"feature options name unknown feature(s): {', '.join(unknown)}")
    features: dict[str, Any] = {}
    label_type = None
    for feature in schema.feature:
        dtype = schema_pb2.FeatureType.Name(feature.type)
        if feature.name == label:
            label_type = dtype
            continue
        skipped = default_skip(feature)
        given = options.get(feature.name, {})
        if skipped and skipped != "an identifier" and given.get("kind", SKIP) != SKIP:
            # The gateway's validator and the monitor leave such a feature alone (TFDV's
            # rule), so the model must not read it: the schema decides, not the config.
            raise ValueError(f"feature '{feature.name}' is {skipped} in the schema, so the "
                             "model cannot read it; set its lifecycle_stage in the schema "
                             "to make it a model input")
        if skipped and given and "kind" not in given:
            raise ValueError(f"feature '{feature.name}' is not a model input by default "
                             f"({skipped}), so {', '.join(sorted(given))} would do nothing; "
                             "name its kind too")
        kind = SKIP if skipped else CATEGORICAL if is_categorical(feature) else NUMERIC
        spec: dict[str, Any] = {"kind": kind, "dtype": dtype}
        spec.update(given)
        kind = spec["kind"]
        if kind not in (NUMERIC, CATEGORICAL, BUCKETIZE, SKIP):
            raise ValueError(f"feature '{feature.name}': unknown kind '{kind}'")
        if kind in (NUMERIC, BUCKETIZE) and feature.type == schema_pb2.BYTES:
            raise ValueError(f"feature '{feature.name}' is a string; it cannot be {kind}")
        if kind == CATEGORICAL:
            spec.setdefault("frequency_threshold", DEFAULT_FREQUENCY_THRESHOLD)
            spec.setdefault("num_oov_buckets", DEFAULT_OOV_BUCKETS)
        if kind == BUCKETIZE:
            if "boundaries" in spec:  # fixed boundaries: ids 0..len(boundaries)
                bounds = [float(b) for b in spec["boundaries"]]
                if not bounds or bounds != sorted(set(bounds)):
                    raise ValueError(f"feature '{feature.name}': boundaries must be a "
                                     "non-empty increasing list")
                spec["boundaries"] = bounds
                spec["num_buckets"] = len(bounds)
            spec.setdefault("num_buckets", DEFAULT_BUCKETS)
        features[feature.name] = spec
    if label_type is None:
        raise ValueError(f"label '{label}' is not in the schema")
    return {
        "label": label,
        "label_dtype": label_type,
        "problem_type": problem_type,
        "features": features,
    }


def model_features(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The features the model reads (everything not skipped)."""
    return {n: s for n, s in plan["features"].items() if s["kind"] != SKIP}

