"""End-to-end: the full pipeline (Transform, Trainer, Evaluator, Pusher) on small data, the
training/serving skew check, the build record and the evaluation gate."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf

from components.build_record import diff_records, load_record
from pipeline import cli
from pipeline.config import load_config
from pipeline.runner import EXIT_OK, run


def _run(*overrides, name="listening", until=None):
    # In-process Beam: these runs test the stages, not the runner's process pool.
    config = load_config(name, ["beam.direct_running_mode=in_memory", *overrides])
    out = io.StringIO()
    result = run(config, until=until, out=out)
    return config, result, out.getvalue()


@pytest.fixture(scope="module")
def trained(clean_listening, tmp_path_factory):
    """The listening pipeline run once to the end on clean data."""
    out_dir = tmp_path_factory.mktemp("trained")
    config, result, text = _run(f"data.location={clean_listening}", f"output_dir={out_dir}")
    assert result.exit_code == EXIT_OK, text
    return config, result, text


def test_pipeline_trains_blesses_and_pushes_in_serving_layout(trained):
    config, result, text = trained
    assert "Model blessed (auc" in text
    assert result.pushed is not None
    version = os.path.basename(result.pushed)
    assert version.isdigit()
    assert os.path.dirname(result.pushed) == config.push_dir
    assert os.path.isfile(os.path.join(result.pushed, "saved_model.pb"))
    record = load_record(result.pushed)
    assert record["eval_metrics"]["auc"] >= 0.70
    assert record["data"]["span"] == 1
    assert record["data"]["train_examples"] + record["data"]["eval_examples"] == 4500
    assert set(record["vocabularies"]) >= {"country", "device", "genre", "context", "account_type"}
    assert "request_id" not in record["transform"]["features"] or (
        record["transform"]["features"]["request_id"]["kind"] == "skip"
    )
    assert record["libraries"]["tfx"] == "1.16.0"
    assert f"Pushed version {version}" in text


def test_a_rerun_on_unchanged_inputs_is_served_from_cache(trained, clean_listening):
    config, first, _ = trained
    before = sorted(os.listdir(config.push_dir))
    _, again, text = _run(f"data.location={clean_listening}", f"output_dir={config.output_dir}")
    assert again.exit_code == EXIT_OK, text
    # Every component, Evaluator and Pusher included: the baseline excludes the candidate.
    finished = [line for line in text.splitlines()
                if "] finished" in line and "resolver" not in line]
    assert len(finished) == 9 and all(line.endswith("(cached)") for line in finished), text
    assert "Nothing new to push" in text
    assert sorted(os.listdir(config.push_dir)) == before
    assert again.outputs["model"].id == first.outputs["model"].id


def test_model_artifact_in_ml_metadata_carries_the_build_record(trained):
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    config, result, _ = trained
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    (model,) = store.get_artifacts_by_id([result.outputs["model"].id])
    props = model.custom_properties
    record = load_record(result.pushed)
    assert props["tandem.schema.fingerprint"].string_value == record["schema"]["fingerprint"]
    assert props["tandem.transform.fingerprint"].string_value == record["transform"]["fingerprint"]
    assert props["tandem.vocabularies.country.size"].int_value == record["vocabularies"]["country"]["size"]
    assert props["tandem.data.span"].int_value == 1


def test_exported_signatures_and_warmup_requests(trained):
    from tensorflow_serving.apis import prediction_log_pb2

    _, result, _ = trained
    loaded = tf.saved_model.load(result.pushed)
    assert {"serving_default", "transform_features", "classification"} <= set(loaded.signatures)
    serving = loaded.signatures["serving_default"]
    (spec,) = serving.structured_input_signature[1].values()
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(result.pushed, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    sigs = saved.meta_graphs[0].signature_def
    assert sigs["classification"].method_name == "tensorflow/serving/classify"
    assert set(sigs["classification"].outputs) == {"classes", "scores"}
    warmup = os.path.join(result.pushed, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(warmup)]
    assert 0 < len(logs) <= 1000
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    examples = tf.make_ndarray(request.inputs["examples"])
    out = serving(examples=tf.constant(examples))
    assert out["probabilities"].shape == (len(examples),)


def _eval_examples(result, n=300):
    from tensorflow.core.example import example_pb2

    split = os.path.join(result.outputs["examples"].uri, "Split-eval")
    files = sorted(tf.io.gfile.glob(os.path.join(split, "*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n)]
    raw = []
    for r in records:
        example = example_pb2.Example.FromString(r)
        del example.features.feature["skipped"]
        raw.append(example.SerializeToString())
    return records, raw


def test_serving_and_training_paths_give_the_same_predictions(trained):
    """Training/serving skew: serving_default on raw serialized examples must equal the
    training path, TF Transform's output fed to the Keras model."""
    import tensorflow_transform as tft

    _, result, _ = trained
    with_label, without_label = _eval_examples(result)
    transform_output = tft.TFTransformOutput(result.outputs["transform_graph"].uri)
    parsed = tf.io.parse_example(tf.constant(with_label), transform_output.raw_feature_spec())
    transformed = transform_output.transform_raw_features(parsed)
    model_dir = os.path.join(result.outputs["model"].uri, "Format-Serving")
    keras_model = tf.keras.models.load_model(model_dir)
    inputs = {k: transformed[k] for k in keras_model.input}
    training_path = keras_model(inputs).numpy()
    serving = tf.saved_model.load(result.pushed).signatures["serving_default"]
    serving_path = serving(examples=tf.constant(without_label))["probabilities"].numpy()
    assert len(serving_path) == 300
    np.testing.assert_allclose(serving_path, training_path, atol=1e-5)
    assert serving_path.std() > 0.05  # real predictions, not a constant


def test_a_worse_candidate_is_not_blessed_and_nothing_is_pushed(trained, clean_listening):
    config, first, _ = trained
    before = sorted(os.listdir(config.push_dir))
    _, result, text = _run(
        f"data.location={clean_listening}", f"output_dir={config.output_dir}", "model.max_steps=1"
    )
    assert result.exit_code == EXIT_OK, text
    assert "Model NOT blessed" in text
    assert "failed: auc" in text
    assert "Nothing pushed" in text
    assert result.pushed is None
    assert sorted(os.listdir(config.push_dir)) == before


def test_a_changed_vocabulary_and_option_show_in_fingerprints_and_diff(
    trained, clean_listening, tmp_path, capsys
):
    config, first, _ = trained
    _, result, text = _run(
        f"data.location={clean_listening}", f"output_dir={config.output_dir}",
        "features.country.frequency_threshold=200", until="train",
    )
    assert result.exit_code == EXIT_OK, text
    new_model = os.path.join(result.outputs["model"].uri, "Format-Serving")
    a, b = load_record(first.pushed), load_record(new_model)
    assert a["transform"]["fingerprint"] != b["transform"]["fingerprint"]
    assert a["vocabularies"]["country"]["sha256"] != b["vocabularies"]["country"]["sha256"]
    lines = diff_records(a, b)
    size_a, size_b = a["vocabularies"]["country"]["size"], b["vocabularies"]["country"]["size"]
    assert size_b < size_a
    assert f"vocabulary `country` changed: {size_a} → {size_b} terms" in lines
    assert any(line.startswith("preprocessing of `country` changed") and "frequency_threshold=200"
               in line for line in lines)
    assert all("vocabulary `genre`" not in line for line in lines)
    assert cli.main(["model", "diff", first.pushed, new_model]) == 0
    assert f"vocabulary `country` changed: {size_a} → {size_b} terms" in capsys.readouterr().out
    assert cli.main(["model", "inspect", first.pushed]) == 0
    assert "vocabularies.country.size" in capsys.readouterr().out
    assert cli.main(["model", "inspect", str(tmp_path)]) == 2


def test_taxi_regression_trains_and_pushes(tmp_path):
    config, result, text = _run(f"output_dir={tmp_path}", name="taxi")
    assert result.exit_code == EXIT_OK, text
    assert "Model blessed (root_mean_squared_error" in text
    assert result.pushed and os.path.isfile(os.path.join(result.pushed, "saved_model.pb"))
    record = load_record(result.pushed)
    assert record["problem_type"] == "regression"
    assert record["eval_metrics"]["rmse"] < 1.5  # predicting the mean tip scores 2.16
    loaded = tf.saved_model.load(result.pushed)
    assert {"serving_default", "regression", "transform_features"} <= set(loaded.signatures)


def test_the_model_server_serves_what_the_pipeline_pushed(trained):
    """Pusher's output is a TF Serving model directory: the embedded server loads it (with
    its warmup requests) and answers Predict and Classify like the in-process model."""
    import grpc
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        model_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    from serving.server import ModelServer, ServerOptions
    from tests.serving.conftest import free_port

    config, result, _ = trained
    server = ModelServer(ServerOptions(port=free_port(), rest_api_port=0,
                                       model_name=config.model_name, model_base_path=config.push_dir))
    server.start()
    try:
        servable = server.manager.resolve(model_pb2.ModelSpec(name=config.model_name))
        assert all(call.direct for call in servable.calls.values())  # the fast path applies
        _, raw = _eval_examples(result, n=50)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=config.model_name))
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(raw))
        response = stub.Predict(request, timeout=60)
        assert response.model_spec.version.value == int(os.path.basename(result.pushed))
        served = tf.make_ndarray(response.outputs["probabilities"])
        local = tf.saved_model.load(result.pushed).signatures["serving_default"]
        np.testing.assert_allclose(served, local(examples=tf.constant(raw))["probabilities"].numpy(),
                                   atol=1e-6)
        classify = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(
            name=config.model_name, signature_name="classification"))
        for r in raw[:5]:
            classify.input.example_list.examples.add().CopyFrom(example_pb2.Example.FromString(r))
        results = stub.Classify(classify, timeout=60).result.classifications
        assert [c.classes[1].score for c in results] == pytest.approx(served[:5].tolist(), abs=1e-6)
    finally:
        server.stop(grace=0)
