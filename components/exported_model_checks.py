"""Model checks on the exported SavedModel: what serving will run, tested through its signatures.

Export skew (Data 7), the fitted feature code (Data 7), privacy (Data 5), the schema's rules
for every model input (Data 4) and one traced explanation (Infra 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tandem.components.model_checks import result
from tandem.schemas.contracts import SERVING_DEFAULT, TRANSFORM_SIGNATURE, served_output


def skew(served: np.ndarray, training: np.ndarray, problem: str, scale: tuple[float, float]
         ) -> tuple[float, str]:
    """The largest |served - training|, and words naming its units when they are not the
    answer's own. A regression answer's difference is taken relative to the larger of the
    label's standard deviation and the answer's size: the serving signature scales a float32
    answer back to the label's units, where float32 rounding grows with both (3e-5 for a
    label of spread 80 around 73), which is no skew; a label of narrow spread near zero is
    judged more strictly than in its own units."""
    if not len(served):
        return 0.0, ""
    diff = np.abs(served - training)
    if problem != "regression" or not scale[1] > 0:
        return float(np.max(diff)), ""
    relative = float(np.max(diff / np.maximum(scale[1], np.abs(training))))
    return relative, (f" relative to max(the label's standard deviation {scale[1]:.4g}, "
                      f"|answer|) ({float(np.max(diff)):.2e} in the label's units)")


def export_skew(loaded, model, transform_output, raw: list[bytes], files: list[str],
                problem: str, scale: tuple[float, float], tolerance: float) -> dict[str, Any]:
    """Data 7: the same raw examples through the exported serving signature (tf.Example
    bytes, parsed by the SavedModel) and through the training input path (tfx_bsl's decoder
    and tensor adapter, as the Trainer's dataset reads them), then the same Transform graph
    and model: the predictions must agree."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    start = time.perf_counter()
    schema = transform_output.raw_metadata.schema
    batch = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString()).DecodeBatch(raw)
    adapter = tfxio.TensorAdapter(tfxio.TensorAdapterConfig(
        batch.schema, tfxio.TFExampleRecord(file_pattern=files, schema=schema,
                                            validate=False).TensorRepresentations()))
    transformed = transform_output.transform_features_layer()(adapter.ToBatchTensors(batch))
    names = list(model.input.keys()) if isinstance(model.input, dict) else []
    training = np.asarray(model({k: transformed[k] for k in names}, training=False))
    if problem == "regression":
        training = training * scale[1] + scale[0]
    served = served_output(loaded.signatures[SERVING_DEFAULT](examples=tf.constant(raw)),
                           problem)
    if served.ndim == 2 and training.ndim == 1:  # binary classify outputs: P(class 1)
        served = served[:, -1]
    diff, units = skew(served, training, problem, scale)
    return result("export_skew", diff <= tolerance,
                  f"{len(raw)} eval examples: serving signature vs training input path, max "
                  f"|difference| {diff:.2e}{units} (tolerance {tolerance:g})",
                  examples=len(raw), max_abs_diff=diff, tolerance=tolerance,
                  seconds=round(time.perf_counter() - start, 2))


def _set(example, name: str, value, dtype: str) -> None:
    feature = example.features.feature[name]
    feature.Clear()
    if dtype == "BYTES":
        feature.bytes_list.value.append(value if isinstance(value, bytes) else str(value).encode())
    elif dtype == "INT":
        feature.int64_list.value.append(int(value))
    else:
        feature.float_list.value.append(float(value))


def _value(example, name: str):
    feature = example.features.feature[name]
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if len(values) else None


def feature_code(loaded, transform_output, plan: dict, base: bytes,
                 max_entries: int = 25) -> dict[str, Any]:
    """Data 7: unit tests of the fitted feature code, through the exported
    transform_features signature. Categorical: vocabulary entries map to their line in the
    vocabulary file, and an unseen value to an out-of-vocabulary bucket. Numeric: scaling is
    finite and increasing. Bucketized: ids are in range and do not decrease."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features

    start = time.perf_counter()
    transform = loaded.signatures[TRANSFORM_SIGNATURE]
    template = example_pb2.Example.FromString(base)

    def run(name: str, values: list, dtype: str) -> np.ndarray:
        batch = []
        for v in values:
            e = example_pb2.Example()
            e.CopyFrom(template)
            _set(e, name, v, dtype)
            batch.append(e.SerializeToString())
        return np.asarray(transform(examples=tf.constant(batch))[name]).reshape(-1)

    failures: list[str] = []
    tests = 0
    for name, spec in model_features(plan).items():
        dtype = spec["dtype"]
        if spec["kind"] == CATEGORICAL:
            path = transform_output.vocabulary_file_by_name(name)
            with tf.io.gfile.GFile(path) as f:
                vocab = [line.rstrip("\n") for line in f]
            picks = list(range(min(max_entries, len(vocab))))
            ids = run(name, [vocab[i] for i in picks], dtype)
            tests += 1
            if list(ids) != picks:
                failures.append(f"{name}: vocabulary entries map to {list(ids)[:5]}..., not to "
                                "their lines")
            unseen = "__tandem_unseen__" if dtype == "BYTES" else \
                max([int(float(v)) for v in vocab if v.lstrip("-").isdigit()] or [0]) + 10_007
            (oov,) = run(name, [unseen], dtype)
            tests += 1
            size = len(vocab)
            if not size <= oov < size + spec["num_oov_buckets"]:
                failures.append(f"{name}: an unseen value maps to {oov}, outside the "
                                f"out-of-vocabulary buckets [{size}, "
                                f"{size + spec['num_oov_buckets']})")
        elif spec["kind"] in (NUMERIC, BUCKETIZE):
            v = _value(template, name)
            v = float(v) if v is not None else 0.0
            values = [v - 10, v, v + 10] if dtype == "INT" else [v - 10.0, v, v + 10.0]
            out = run(name, values, dtype)
            tests += 1
            if not np.isfinite(out).all():
                failures.append(f"{name}: transformed values {list(out)} are not finite")
            elif spec["kind"] == NUMERIC and not (out[0] < out[1] < out[2]):
                failures.append(f"{name}: scaling is not increasing ({list(out)})")
            elif spec["kind"] == BUCKETIZE and not (
                    out[0] <= out[1] <= out[2] and out.min() >= 0
                    and out.max() <= spec["num_buckets"]):
                failures.append(f"{name}: bucket ids {list(out)} out of order or range")
    return result("feature_code", not failures,
                  f"{tests} feature code tests on {len(model_features(plan))} features" +
                  (f"; {len(failures)} failed: {'; '.join(failures)}" if failures else ", all pass"),
                  tests=tests, failures=failures, seconds=round(time.perf_counter() - start, 2))


def privacy(loaded, plan: dict, raw: list[bytes], private: list[str], schema_names: set[str],
            problem: str) -> dict[str, Any] | None:
    """Data 5: private features (config `checks.private_features`) are not model inputs, and
    changing them changes no prediction of the exported model."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components.features import model_features

    if not private:
        return None  # nothing declared private: Data 5 stays without automated evidence
    inputs = set(model_features(plan))
    unknown = sorted(set(private) - schema_names)
    used = sorted(set(private) & inputs)
    serve = loaded.signatures[SERVING_DEFAULT]
    before = served_output(serve(examples=tf.constant(raw)), problem)
    changed = []
    for e in raw:
        ex = example_pb2.Example.FromString(e)
        for name in private:
            if name in ex.features.feature:
                spec = plan["features"].get(name, {"dtype": "BYTES"})
                old = _value(ex, name)
                new = b"__tandem_redacted__" if spec["dtype"] == "BYTES" else \
                    (old or 0) + 12_345
                _set(ex, name, new, spec["dtype"])
        changed.append(ex.SerializeToString())
    after = served_output(serve(examples=tf.constant(changed)), problem)
    moved = float(np.max(np.abs(after - before))) if len(raw) else 0.0
    problems = ([f"not in the schema: {', '.join(unknown)}"] if unknown else []) + \
        ([f"model inputs: {', '.join(used)}"] if used else []) + \
        ([f"changing them moves predictions by up to {moved:.2e}"] if moved > 0 else [])
    return result("privacy", not problems,
                  f"private features {', '.join(private)} (changed in n={len(raw)} eval "
                  "examples): " + ("; ".join(problems) if problems else
                                   "not model inputs, no prediction moved"),
                  features=list(private), model_inputs=used, max_abs_change=moved,
                  examples=len(raw))


def feature_rules(schema, plan: dict) -> dict[str, Any]:
    """Data 4: every model input is declared in the schema with a presence rule, a domain
    (values or range), is served (not excluded from the SERVING environment) and is at a
    production lifecycle stage (unset, BETA or PRODUCTION). A string the schema marks an open
    vocabulary (`schema propose` marks those with too many values for a domain: a date, free
    text), read through a vocabulary with out-of-vocabulary buckets, needs no closed domain:
    its values are the vocabulary Transform learns and any other value has a bucket; the
    verdict names these. An identifier or a string whose domain was deleted still fails."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tandem.components.features import CATEGORICAL, SERVED_STAGES, model_features
    from tandem.schemas.identifiers import TAG as IDENTIFIER
    from tandem.schemas.propose import OPEN_VOCABULARY

    by_name = {f.name: f for f in schema.feature}
    failures, open_vocabularies = [], []
    inputs = model_features(plan)
    for name, spec in inputs.items():
        f = by_name.get(name)
        if f is None:
            failures.append(f"{name}: not in the schema")
            continue
        if f.lifecycle_stage not in SERVED_STAGES:
            stage = schema_pb2.LifecycleStage.Name(f.lifecycle_stage)
            failures.append(f"{name}: lifecycle stage {stage}")
        elif f.deprecated:
            failures.append(f"{name}: deprecated")
        if not f.HasField("presence"):
            failures.append(f"{name}: no presence rule")
        if f.WhichOneof("domain_info") is None:
            if f.type == schema_pb2.BYTES and OPEN_VOCABULARY in f.annotation.tag and \
                    IDENTIFIER not in f.annotation.tag and spec["kind"] == CATEGORICAL and \
                    spec.get("num_oov_buckets", 0) >= 1:
                open_vocabularies.append(name)
            else:
                failures.append(f"{name}: no domain (values or range)")
        if "SERVING" in f.not_in_environment:
            failures.append(f"{name}: not in the SERVING environment, yet a model input")
    opened = (f" (open vocabularies, unseen values to an out-of-vocabulary bucket: "
              f"{', '.join(open_vocabularies)})" if open_vocabularies else "")
    return result("feature_rules", not failures,
                  f"{len(inputs)} model inputs declared with presence, domain{opened}, SERVING "
                  "and lifecycle" +
                  (f"; {len(failures)} problems: {'; '.join(failures)}" if failures else ""),
                  failures=failures, open_vocabularies=open_vocabularies)


def explained(serving_dir: str, raw: bytes, trace: Callable[[bytes], dict] | None = None,
              tolerance: float = 1e-5, problem: str = "binary_classification",
              scale: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """Infra 5: `tandem explain` on one eval example: the score rebuilt from the transformed
    features equals the served score (a regression answer's difference relative to the label's
    spread or the answer's size, as `skew` takes it: float32 rounding of a price of 500,000 is
    a few hundredths in its own units)."""
    from tandem.components.explain import explain

    trace = trace(raw) if trace else explain(serving_dir, raw)
    diff, units = skew(np.array([trace["served"]], dtype=np.float64),
                       np.array([trace["score"]], dtype=np.float64), problem, scale)
    return result("explain", diff <= tolerance,
                  f"one eval example traced raw ({len(trace['raw'])} features) -> transformed "
                  f"({len(trace['transformed'])}) -> score {trace['score']:.6f}; served "
                  f"{trace['served']:.6f} (|difference| {diff:.1e}{units}, tolerance "
                  f"{tolerance:g})",
                  max_abs_diff=diff, tolerance=tolerance, examples=1)
