"""Trainer: run_fn builds one wide-and-deep Keras model for any tabular dataset and exports a
SavedModel that takes raw serialized tf.Examples, with the Transform graph inside.

run_fn reads as its steps: the model's side (datasets, training, selection) is
components/trainer_model.py, the export's (signatures, warmup, build record)
components/trainer_export.py, and the checks it runs between them components/model_checks.py.
"""

from __future__ import annotations

import math
from typing import Any

from absl import logging

from tandem.components import build_record
from tandem.components import model_checks as mc
from tandem.components import tfx_api as tfx
from tandem.components.features import BUCKETIZE, model_features
from tandem.components.trainer_export import export
from tandem.components.trainer_model import (
    Chosen,
    Training,
    evaluate,
    start_training,
    train_and_select,
)

CHECK_MESSAGE = "Trainer check %s: %s"  # the runner prints these as progress lines


def _logged(check: dict[str, Any]) -> dict[str, Any]:
    logging.info(CHECK_MESSAGE, check["check"], check["summary"])
    return check


def _eval_sample(training: Training, checks: dict[str, Any]) -> mc.Sample:
    """One eval sample for the model selection and the checks."""
    features, labels = mc.take(training.eval_dataset, checks.get("sample_examples", 4000))
    return mc.Sample(features, labels,
                     mc.raw_records(training.fn_args.eval_files, checks["export_examples"])
                     if checks["enabled"] else [])


def _checks_before_training(training: Training, sample: mc.Sample, measure, higher: bool,
                            checks: dict[str, Any]) -> tuple[dict[str, Any], list[dict]]:
    """The spec learns (Infra 2), and the tuning (Model 3) picks the hyperparameters the
    training uses: (those hyperparameters, the checks' records)."""
    hp = training.hp
    results = [_logged(mc.model_spec(training.models, hp, training.datasets()[0],
                                     checks["spec_steps"]))]
    used = dict(hp)
    if checks["tuning_trials"] > 1:
        used, trial = mc.tuning(training.models, hp, training.datasets()[0], sample, measure,
                                higher, checks["tuning_trials"], checks["tuning_steps"],
                                training.seed, training.deciding_metric,
                                training.steps_per_epoch)
        results.append(_logged(trial))
    return used, results


def _checks_after_training(training: Training, chosen: Chosen, sample: mc.Sample, measure,
                           higher: bool, checks: dict[str, Any]) -> list[dict]:
    """Numerics, reproducibility, importance and the baseline comparison, on the model the
    run exports."""
    from tandem.components import model_selection as ms
    from tandem.components.importance import importance

    model, plan, seed = chosen.model, training.plan, training.seed
    after = [
        lambda: mc.numerics(model, chosen.guard, sample, plan["problem_type"]),
        lambda: mc.reproducibility(training.models, chosen.hyperparameters,
                                   lambda: training.datasets()[0], sample, seed,
                                   checks["reproducibility_tolerance"],
                                   checks["reproducibility_steps"],
                                   math.ceil(training.counts["train"]
                                             / training.hp["batch_size"])),
        lambda: importance(model, sample, measure, higher, checks["importance_repeats"],
                           seed, training.deciding_metric, checks["importance_correlation"],
                           ordinal={n for n, s in model_features(plan).items()
                                    if s["kind"] == BUCKETIZE},
                           material=checks["importance_material"]),
        lambda: ms.baseline_check(chosen.selection),
    ]
    return [_logged(check()) for check in after]


def _checks_on_export(training: Training, chosen: Chosen, sample: mc.Sample,
                      checks: dict[str, Any], record: dict[str, Any]) -> list[dict]:
    """Export skew, the feature code, privacy, the schema's rules and one explanation, on
    the SavedModel as serving will load it."""
    import tensorflow as tf

    from tandem.components import exported_model_checks as exported
    from tandem.components.explain import explain
    from tandem.schemas import load_schema

    fn_args, plan, transform_output = training.fn_args, training.plan, training.transform_output
    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    schema = load_schema(fn_args.schema_path) if fn_args.schema_path.endswith(".pbtxt") \
        else transform_output.raw_metadata.schema
    names = {f.name for f in schema.feature}
    on_export = [
        lambda: exported.export_skew(loaded, chosen.model, transform_output, sample.raw,
                                     fn_args.eval_files, plan["problem_type"], training.scale,
                                     checks["export_tolerance"]),
        lambda: exported.feature_code(loaded, transform_output, plan, sample.raw[0]),
        lambda: exported.privacy(loaded, plan, sample.raw, checks["private_features"], names,
                                 plan["problem_type"]),
        lambda: exported.feature_rules(schema, plan),
        lambda: exported.explained(fn_args.serving_model_dir, sample.raw[0],
                                   trace=lambda raw: explain(fn_args.serving_model_dir, raw,
                                                             loaded, record),
                                   problem=plan["problem_type"], scale=training.scale),
    ]
    return [_logged(done) for done in (check() for check in on_export) if done is not None]


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train, run the model checks (components/model_checks.py),
    export, and write the build record."""
    from tandem.components.sampling_error import metric

    checks = fn_args.custom_config.get("checks") or {"enabled": False}
    training = start_training(fn_args, guarded=checks["enabled"])
    sample = _eval_sample(training, checks)
    measure, higher = metric(training.deciding_metric, training.plan["problem_type"])
    used, results = (_checks_before_training(training, sample, measure, higher, checks)
                     if checks["enabled"] else (dict(training.hp), []))
    chosen = train_and_select(training, used, sample, measure, higher)
    metrics = evaluate(chosen.model, training)
    if checks["enabled"]:
        results += _checks_after_training(training, chosen, sample, measure, higher, checks)
    record = export(chosen.model, training, chosen.hyperparameters, metrics,
                    chosen.selection.record(), chosen.naive)
    if checks["enabled"]:
        record["checks"] = results + _checks_on_export(training, chosen, sample, checks,
                                                       record)
        build_record.write(fn_args.serving_model_dir, record)
