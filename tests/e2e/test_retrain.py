"""Retraining from the request log: the logged examples are the training examples."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tandem

pytestmark = pytest.mark.xdist_group("trained_listening")


def _auc(scores, labels):
    from tandem.components.shadow.compare import _auc as auc

    return auc(np.asarray(scores), np.asarray(labels))


def _score(model_dir, examples):
    from tandem.components.shadow.transforms import output_key

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = {k: v.numpy() for k, v in fn(examples=tf.constant(examples)).items()}
    values = out[output_key(out)]
    return values[:, -1] if values.ndim == 2 else values


def test_a_model_retrained_from_logs_matches_one_trained_on_the_generators_rows(
        trained_listening, clean_listening, tmp_path):
    """The same requests, logged by the gateway and joined with late labels, train a model
    within 0.01 AUC of the one trained on the generator's decorated rows (on a common
    held-out span of the same world); ML Metadata leads from the log files and the labels
    file to the new Examples and on to the model; `tandem model inspect` names them."""
    import ml_metadata as mlmd
    from tfx import v1 as tfx

    from tandem.pipeline.datasets import listening
    from tests.components.monitor.conftest import examples_of, write_log

    rows = examples_of(clean_listening)
    write_log(tmp_path / "logs", rows, per_record=4)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\n" + "".join(f"{r},{y}\n" for r, _, y in rows))
    out = tmp_path / "retrained"
    done = tandem("retrain", "--config", "listening", "--logs", str(tmp_path / "logs"),
                  "--labels", str(labels), "--set", f"output_dir={out}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[LogExampleGen] finished" in done.stdout

    held_out = tmp_path / "held-out"
    listening.generate(str(held_out), 3000, seed=7, span=2)
    test = examples_of(held_out)
    examples = [b for _, b, _ in test]
    y = [label for _, _, label in test]
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import latest_outputs, pushed_destination

    config = load_config("listening", [f"output_dir={out}", "data.format=request_log",
                                       f"data.location={tmp_path / 'logs'}",
                                       f"data.labels={labels}"])
    outputs = latest_outputs(config)
    retrained = pushed_destination(outputs)
    auc_logs = _auc(_score(retrained, examples), y)
    auc_rows = _auc(_score(trained_listening.pushed, examples), y)
    assert abs(auc_logs - auc_rows) <= 0.01, (auc_logs, auc_rows)

    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path))
    [gen] = [e for e in store.get_executions()
             if store.get_execution_types_by_id([e.type_id])[0].name.endswith("LogExampleGen")]
    events = store.get_events_by_execution_ids([gen.id])
    inputs = {a.uri for a in store.get_artifacts_by_id(
        [e.artifact_id for e in events if e.type == mlmd.proto.Event.INPUT])}
    assert inputs == {str(tmp_path / "logs"), str(labels)}
    [examples_artifact] = store.get_artifacts_by_id(
        [e.artifact_id for e in events if e.type == mlmd.proto.Event.OUTPUT])
    consumers = store.get_events_by_artifact_ids([examples_artifact.id])
    trainer_runs = {e.execution_id for e in consumers if e.type == mlmd.proto.Event.INPUT}
    trainer_outputs = store.get_events_by_execution_ids(list(trainer_runs))
    models = [a for a in store.get_artifacts_by_id(
        [e.artifact_id for e in trainer_outputs if e.type == mlmd.proto.Event.OUTPUT])
        if store.get_artifact_types_by_id([a.type_id])[0].name == "Model"]
    assert models and models[0].uri == outputs["model"].uri

    inspected = tandem("model", "inspect", retrained)
    assert inspected.returncode == 0, inspected.stderr
    assert str(tmp_path / "logs") in inspected.stdout and str(labels) in inspected.stdout
    source = json.loads(examples_artifact.custom_properties["tandem.source"].string_value)
    assert source["join"]["joined"] == len(rows) and source["join"]["unlabelled"] == 0
    assert os.path.basename(retrained.rstrip("/")).isdigit()
