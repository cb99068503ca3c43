"""The embedded model server against real TF Serving clients: the generated gRPC stubs and
a plain HTTP client, on 127.0.0.1."""

import base64
import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tandem.serving.model_server.model_config import read_config, write_config

from .conftest import example, make_model

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


class Clients:
    def __init__(self, server):
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.rest = f"http://127.0.0.1:{server.rest_port}"

    def predict(self, xs, name="scorer", version=None, label=None, signature=None):
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name))
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        if signature:
            request.model_spec.signature_name = signature
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(x) for x in xs]))
        return self.predict_stub.Predict(request, timeout=30)

    def status(self, name="scorer"):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
        return self.model_stub.GetModelStatus(request, timeout=30).model_version_status

    def http(self, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.rest + path, data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@pytest.fixture
def clients(model_base, start_server):
    server = start_server(model_name="scorer", model_base_path=str(model_base))
    return Clients(server)


def _in_process(path, xs):
    fn = tf.saved_model.load(path).signatures["serving_default"]
    return fn(examples=tf.constant([example(x) for x in xs]))["probabilities"].numpy()


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_grpc_and_rest_predictions_equal_the_in_process_model(clients, model_base):
    xs = [-1.0, 0.0, 0.5, 2.0]
    expected = _in_process(str(model_base / "1"), xs)
    response = clients.predict(xs)
    assert response.model_spec.name == "scorer"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, rtol=1e-6)
    b64 = [{"b64": base64.b64encode(example(x)).decode()} for x in xs]
    status, body = clients.http("/v1/models/scorer:predict", {"instances": b64})
    assert status == 200, body
    rows = json.loads(body)["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, rtol=1e-6)
    assert rows[0]["classes"] == ["0", "1"]
    status, body = clients.http("/v1/models/scorer/versions/1:predict",
                                {"inputs": b64, "signature_name": "serving_default"})
    assert status == 200, body
    np.testing.assert_allclose(json.loads(body)["outputs"]["probabilities"], expected, rtol=1e-6)
    status, body = clients.http("/v1/models/scorer:predict",
                                {"signature_name": "dense", "instances": [[1.0, 2.0], [0.5, 0.5]]})
    assert status == 200 and json.loads(body) == {"predictions": [3.0, 1.0]}


def test_classify_regress_and_metadata(clients):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name="scorer", signature_name="classification"))
    for x in (0.0, 1.0):
        request.input.example_list.examples.add().ParseFromString(example(x))
    response = clients.predict_stub.Classify(request, timeout=30)
    classes = response.result.classifications
    assert [c.label for c in classes[0].classes] == ["0", "1"]
    assert classes[1].classes[1].score == pytest.approx(1 / (1 + np.exp(-1.5)), rel=1e-5)
    assert response.model_spec.version.value == 1

    regress = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(name="scorer", signature_name="regression"))
    regress.input.example_list_with_context.context.ParseFromString(example(0.0, "b"))
    regress.input.example_list_with_context.examples.add().ParseFromString(example(2.0, "b"))
    value = clients.predict_stub.Regress(regress, timeout=30).result.regressions[0].value
    assert value == pytest.approx(1 / (1 + np.exp(-3.5)), rel=1e-5)

    status, body = clients.http("/v1/models/scorer:classify", {
        "signature_name": "classification", "examples": [{"x": 1.0, "c": "a"}]})
    assert status == 200
    assert json.loads(body)["results"][0][1][0] == "1"
    status, body = clients.http("/v1/models/scorer:regress", {
        "signature_name": "regression", "context": {"c": "b"}, "examples": [{"x": 2.0}]})
    assert json.loads(body)["results"][0] == pytest.approx(1 / (1 + np.exp(-3.5)), rel=1e-5)

    # JSON has one kind of number: a whole number for a float feature is that float.
    status, body = clients.http("/v1/models/scorer:classify", {
        "signature_name": "classification", "examples": [{"x": 1, "c": "a"}]})
    assert status == 200, body
    assert json.loads(body)["results"][0][1][1] == pytest.approx(1 / (1 + np.exp(-1.5)), rel=1e-5)
    # A value the model cannot parse as its type is refused, naming the feature.
    status, body = clients.http("/v1/models/scorer:classify", {
        "signature_name": "classification", "examples": [{"x": "high", "c": "a"}]})
    assert status == 400
    assert "example 0 feature 'x' takes numbers (the model parses it as float32)" in \
        json.loads(body)["error"]
    # Without signature_name the default (predict) signature is used; the error says which
    # signature to ask for.
    status, body = clients.http("/v1/models/scorer:classify", {"examples": [{"x": 1.0, "c": "a"}]})
    assert status == 400
    assert "set signature_name to 'classification'" in json.loads(body)["error"]

    meta = clients.predict_stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="scorer"), metadata_field=["signature_def"]), timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(sig_map)
    assert sig_map.signature_def["classification"].method_name == "tensorflow/serving/classify"
    status, body = clients.http("/v1/models/scorer/metadata")
    assert status == 200
    assert "serving_default" in json.loads(body)["metadata"]["signature_def"]["signature_def"]


def test_multi_inference_runs_several_signatures_on_the_same_examples(clients):
    def request(*tasks, name="scorer"):
        r = inference_pb2.MultiInferenceRequest()
        for signature, method in tasks:
            r.tasks.add(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                        method_name=f"tensorflow/serving/{method}")
        for x in (0.0, 2.0):
            r.input.example_list.examples.add().ParseFromString(example(x))
        return r

    both = request(("classification", "classify"), ("regression", "regress"))
    results = clients.predict_stub.MultiInference(both, timeout=30).results
    assert [r.model_spec.signature_name for r in results] == ["classification", "regression"]
    assert all(r.model_spec.version.value == 1 for r in results)
    p = 1 / (1 + np.exp(-3.0))
    assert results[0].classification_result.classifications[1].classes[1].score == \
        pytest.approx(p, rel=1e-5)
    assert [v.value for v in results[1].regression_result.regressions] == \
        pytest.approx([0.5, p], rel=1e-5)

    INVALID = grpc.StatusCode.INVALID_ARGUMENT
    for bad, want in [
        (inference_pb2.MultiInferenceRequest(), "at least one task"),
        (request(("classification", "classify"), ("classification", "classify")),
         "Duplicate evaluation of signature: classification"),
        (request(("regression", "classify")),
         'outputs to contain at least one of "classes" or "scores"'),
        (request(("nope", "classify")), "Requested signature not found in model graph: nope"),
    ]:
        code, details = _code(lambda bad=bad: clients.predict_stub.MultiInference(bad, timeout=30))
        assert code == INVALID and want in details, details
    code, details = _code(lambda: clients.predict_stub.MultiInference(
        request(("serving_default", "predict")), timeout=30))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "Unsupported signature method_name: tensorflow/serving/predict" in details
    mixed = request(("classification", "classify"))
    mixed.tasks.add(model_spec=model_pb2.ModelSpec(name="other", signature_name="regression"),
                    method_name="tensorflow/serving/regress")
    code, details = _code(lambda: clients.predict_stub.MultiInference(mixed, timeout=30))
    assert code == INVALID and "same model name and version" in details
    code, _ = _code(lambda: clients.predict_stub.MultiInference(
        request(("classification", "classify"), name="nope"), timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND


def test_every_bad_input_gets_its_status_code(clients):
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    assert _code(lambda: clients.predict([1.0], name="nope"))[0] == NOT_FOUND
    assert _code(lambda: clients.predict([1.0], version=7))[0] == NOT_FOUND
    # TF Serving's codes: an unknown label is a bad request, an unknown signature a failed
    # precondition.
    code, details = _code(lambda: clients.predict([1.0], label="stable"))
    assert code == INVALID and "Unrecognized servable version label: stable" in details
    code, details = _code(lambda: clients.predict([1.0], signature="nope"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert 'Serving signature key "nope" not found.' in details

    wrong_name = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    wrong_name.inputs["inputs"].CopyFrom(tf.make_tensor_proto([example(1.0)]))
    code, details = _code(lambda: clients.predict_stub.Predict(wrong_name, timeout=30))
    assert code == INVALID and "missing examples" in details and "unexpected inputs" in details

    wrong_dtype = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    wrong_dtype.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    code, details = _code(lambda: clients.predict_stub.Predict(wrong_dtype, timeout=30))
    assert code == INVALID and "dtype float but signature 'serving_default' expects string" in details

    garbage = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    garbage.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"not an example"]))
    code, details = _code(lambda: clients.predict_stub.Predict(garbage, timeout=30))
    assert code == INVALID and "rejected the input" in details
    assert "Graph execution error" not in details  # the reason, not TensorFlow's preamble

    int_for_float = tf.train.Example()
    int_for_float.features.feature["x"].int64_list.value.append(17)
    int_for_float.features.feature["c"].bytes_list.value.append(b"a")
    typed = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    typed.inputs["examples"].CopyFrom(tf.make_tensor_proto([int_for_float.SerializeToString()]))
    code, details = _code(lambda: clients.predict_stub.Predict(typed, timeout=30))
    assert code == INVALID and "Key: x" in details and "Data types don't match" in details

    not_classify = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    not_classify.input.example_list.examples.add().ParseFromString(example(1.0))
    code, details = _code(lambda: clients.predict_stub.Classify(not_classify, timeout=30))
    assert code == INVALID and "Expected one or two output Tensors, found 3" in details
    assert "set signature_name to 'classification'" in details

    for path, body, want in [
        ("/v1/models/nope:predict", {"instances": [1]}, 404),
        ("/v1/models/scorer/versions/9:predict", {"instances": [1]}, 404),
        ("/v1/models/scorer:predict", {"instances": [1.0]}, 400),  # float for a string input
        ("/v1/models/scorer:predict", {"instances": [{"b64": "%%%"}]}, 400),
        ("/v1/models/scorer:predict", {"nothing": 1}, 400),
        ("/v1/models/scorer:regress", {"examples": []}, 400),
        ("/v1/models/scorer:frobnicate", {}, 400),  # malformed, as TF Serving says
    ]:
        status, raw = clients.http(path, body)
        assert status == want, (path, raw)
        assert json.loads(raw)["error"]
    status, raw = clients.http("/v1/models/scorer:predict", raw=b"{not json")
    assert status == 400 and "JSON Parse error" in json.loads(raw)["error"]
    # The server answered all of that and still serves.
    assert clients.predict([1.0]).model_spec.version.value == 1


def test_oversized_requests_are_resource_exhausted(model_base, start_server):
    clients = Clients(start_server(model_name="scorer", model_base_path=str(model_base),
                                   max_request_bytes=4096))
    code, _ = _code(lambda: clients.predict([0.5] * 500))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    big = {"instances": [{"b64": base64.b64encode(example(1.0)).decode()}] * 500}
    status, raw = clients.http("/v1/models/scorer:predict", big)
    assert status == 413 and "exceeds the limit" in json.loads(raw)["error"]
    assert clients.predict([0.5]).model_spec.version.value == 1


def test_a_new_version_under_load_switches_over_with_zero_failures(clients, model_base):
    failures, versions, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                versions.append(clients.predict([0.5]).model_spec.version.value)
            except grpc.RpcError as e:  # any failure counts
                failures.append(e.code())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    make_model(str(model_base), 2, bias=1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not versions or versions[-1] != 2):
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert versions[0] == 1 and versions[-1] == 2
    assert len(versions) > 50
    # latest{1}: version 1 was unloaded after 2 became available.
    states = {s.version: s.state for s in clients.status()}
    assert states[2] == AVAILABLE and states[1] != AVAILABLE


def _settled(clients, version, timeout=30):
    """Wait until the server has tried `version`: it is AVAILABLE or its load ended."""
    END = get_model_status_pb2.ModelVersionStatus.END
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {s.version: s.state for s in clients.status()}
        if states.get(version) in (AVAILABLE, END):
            return
        time.sleep(0.1)
    raise AssertionError(f"version {version} was not tried within {timeout}s")


def _corrupt_copy(model_base, version):
    bad = model_base / str(version)
    shutil.copytree(model_base / "1", bad)
    (bad / "saved_model.pb").write_bytes(b"\x00garbage")
    return bad


def test_a_corrupt_or_half_copied_version_never_replaces_the_serving_one(clients, model_base):
    # The newest version is corrupt: latest{1} aspires to it, its load fails, 1 keeps serving.
    _corrupt_copy(model_base, 5)
    _settled(clients, 5)
    status = {s.version: s for s in clients.status()}
    assert status[5].state != AVAILABLE and "5/saved_model.pb" in status[5].status.error_message
    assert status[1].state == AVAILABLE
    assert clients.predict([0.5]).model_spec.version.value == 1
    _, body = clients.http("/monitoring/prometheus/metrics")
    assert 'tandem_serving_model_events_total{event="load_failed",model="scorer",version="5"}' \
        in body.decode()
    # A half-copied newer one (no saved_model.pb yet) is reported, not served.
    half = model_base / "6"
    half.mkdir()
    (half / "variables").mkdir()
    _settled(clients, 6)
    status = {s.version: s for s in clients.status()}
    assert status[6].state != AVAILABLE and "saved_model.pb" in status[6].status.error_message
    assert clients.predict([0.5]).model_spec.version.value == 1
    # Finishing the copy of version 6 makes it load and take over.
    shutil.rmtree(half)
    make_model(str(model_base), 6, bias=2.0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and clients.predict([0.5]).model_spec.version.value != 6:
        time.sleep(0.2)
    assert clients.predict([0.5]).model_spec.version.value == 6
    status, body = clients.http("/v1/models/scorer")
    states = {s["version"]: s["state"] for s in json.loads(body)["model_version_status"]}
    assert states["6"] == "AVAILABLE"


@pytest.mark.parametrize("fall_back", [True, False])
def test_a_restart_with_a_corrupt_newest_version(model_base, start_server, fall_back):
    """A pod rescheduled while the newest version is corrupt: tandem serves the newest version
    that loads and reports the bad one; with the fallback off it behaves as TF Serving (the
    latest policy aspires to the corrupt version only, and nothing serves)."""
    make_model(str(model_base), 2, bias=1.0)
    _corrupt_copy(model_base, 3)
    clients = Clients(start_server(model_name="scorer", model_base_path=str(model_base),
                                   fall_back_on_load_failure=fall_back))
    status = {s.version: s for s in clients.status()}
    assert status[3].state != AVAILABLE and "3/saved_model.pb" in status[3].status.error_message
    if fall_back:
        assert status[2].state == AVAILABLE and 1 not in status
        assert clients.predict([0.5]).model_spec.version.value == 2
    else:
        assert set(status) == {3}
        assert _code(lambda: clients.predict([0.5]))[0] == grpc.StatusCode.NOT_FOUND


def _config_file(tmp_path, base, versions, labels=None, name="scorer"):
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=name, base_path=str(base),
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(versions)
    for k, v in (labels or {}).items():
        model.version_labels[k] = v
    path = tmp_path / "models.config"
    write_config(config, str(path))
    return path


def test_config_reload_by_rpc_and_by_file_poll_without_restart(model_base, start_server, tmp_path):
    make_model(str(model_base), 2, bias=1.0)
    # Without --allow_version_labels_for_unavailable_models, as TF Serving by default: labels
    # go on versions that are already loaded, so the server starts without any.
    path = _config_file(tmp_path, model_base, [1])
    clients = Clients(start_server(model_config_file=str(path),
                                   model_config_file_poll_wait_seconds=0.3))
    config = read_config(str(path))
    config.model_config_list.config[0].version_labels["stable"] = 1
    request = model_management_pb2.ReloadConfigRequest(config=config)
    assert clients.model_stub.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    # A label on a version that is not loaded is refused (FAILED_PRECONDITION).
    config.model_config_list.config[0].version_labels["canary"] = 2
    request = model_management_pb2.ReloadConfigRequest(config=config)
    code, details = _code(lambda: clients.model_stub.HandleReloadConfigRequest(request, timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not currently available" in details
    # So is loading it and labelling it in one step, as TF Serving refuses it.
    config.model_config_list.config[0].model_version_policy.specific.versions.append(2)
    request = model_management_pb2.ReloadConfigRequest(config=config)
    code, details = _code(lambda: clients.model_stub.HandleReloadConfigRequest(request, timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "version 2 of model scorer" in details
    # Loading it first, then labelling it, works.
    del config.model_config_list.config[0].version_labels["canary"]
    request = model_management_pb2.ReloadConfigRequest(config=config)
    assert clients.model_stub.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    config.model_config_list.config[0].version_labels["canary"] = 2
    request = model_management_pb2.ReloadConfigRequest(config=config)
    response = clients.model_stub.HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    assert clients.predict([0.5], label="canary").model_spec.version.value == 2
    status, _ = clients.http("/v1/models/scorer/labels/canary")
    assert status == 200
    # The file poll applies an edited file.
    _config_file(tmp_path, model_base, [2], {"stable": 2})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if clients.predict([0.5], label="stable").model_spec.version.value == 2:
                break
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    assert clients.predict([0.5], label="stable").model_spec.version.value == 2


def test_promote_and_rollback_apply_live_and_survive_a_restart(model_base, start_server, tmp_path):
    from tandem.serving.promotion import promote, read_history, rollback

    make_model(str(model_base), 2, bias=1.0)
    make_model(str(model_base), 3, bias=2.0)
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    clients = Clients(server)
    address = f"127.0.0.1:{server.grpc_port}"
    steps = promote(str(path), address, "scorer", 2, "canary")
    assert steps[0] == "loaded version 2" and "label 'canary': - -> 2" in steps
    assert clients.predict([0.5], label="canary").model_spec.version.value == 2
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    promote(str(path), address, "scorer", 3, "stable")
    assert clients.predict([0.5], label="stable").model_spec.version.value == 3
    time.sleep(0.5)  # the next pass unloads version 1, which no label names any more
    states = {s.version: s.state for s in clients.status()}
    assert states[1] != AVAILABLE and states[2] == AVAILABLE and states[3] == AVAILABLE
    saved = read_config(str(path)).model_config_list.config[0]
    assert dict(saved.version_labels) == {"canary": 2, "stable": 3}
    assert sorted(saved.model_version_policy.specific.versions) == [2, 3]

    rollback(str(path), address, "scorer")
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    assert [h["action"] for h in read_history(str(path))] == ["promote", "promote", "rollback"]

    # A restart reads the rewritten file: same labels, no RPC needed.
    server.stop(grace=0)
    clients = Clients(start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True))
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    assert clients.predict([0.5], label="canary").model_spec.version.value == 2
    rollback(str(path), f"127.0.0.1:{clients.server.grpc_port}", "scorer", to=3)
    assert clients.predict([0.5], label="stable").model_spec.version.value == 3


def test_rolling_back_a_rejected_canary_points_it_at_stable_and_unloads_it(
    model_base, start_server, tmp_path
):
    from tandem.serving.promotion import PromotionError, promote, rollback

    make_model(str(model_base), 2, bias=1.0)
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    clients = Clients(server)
    address = f"127.0.0.1:{server.grpc_port}"
    promote(str(path), address, "scorer", 2, "canary")
    assert clients.predict([0.5], label="canary").model_spec.version.value == 2
    steps = rollback(str(path), address, "scorer", label="canary")
    assert "label 'canary': 2 -> 1" in steps and "unloaded version(s) 2" in steps
    assert clients.predict([0.5], label="canary").model_spec.version.value == 1
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    saved = read_config(str(path)).model_config_list.config[0]
    assert dict(saved.version_labels) == {"canary": 1, "stable": 1}
    with pytest.raises(PromotionError, match="canary already points at version 1"):
        rollback(str(path), address, "scorer", label="canary")


def test_concurrent_promotions_leave_the_file_the_history_and_the_server_agreeing(
    model_base, start_server, tmp_path
):
    from tandem.serving.promotion import promote, read_history

    for version in (2, 3, 4, 5):
        make_model(str(model_base), version, bias=float(version))
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    address = f"127.0.0.1:{server.grpc_port}"
    moves = [(2, "canary"), (3, "stable"), (4, "canary"), (5, "stable")]
    errors = []

    def move(version, label):
        try:
            promote(str(path), address, "scorer", version, label)
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=move, args=m) for m in moves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    history = read_history(str(path))
    assert len(history) == 4
    # Each label ends where the last move of it in the history put it, in the file and live.
    final = {}
    for entry in history:
        final[entry["label"]] = entry["to"]
    saved = read_config(str(path)).model_config_list.config[0]
    assert dict(saved.version_labels) == final
    assert sorted(saved.model_version_policy.specific.versions) == sorted(set(final.values()))
    clients = Clients(server)
    for label, version in final.items():
        assert clients.predict([0.5], label=label).model_spec.version.value == version
    # Every move saw the one before it: its "from" is the label's previous "to".
    previous = {"stable": 1}
    for entry in history:
        assert entry["from"] == previous.get(entry["label"])
        previous[entry["label"]] = entry["to"]


def test_a_server_dying_midway_leaves_the_file_as_it_was_and_restarts_from_it(
    model_base, start_server, tmp_path, monkeypatch
):
    from tandem.serving.promotion import PromotionError, ServerClient, promote, read_history

    make_model(str(model_base), 2, bias=1.0)
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    before = path.read_text()
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    real_reload = ServerClient.reload

    def dies_after_loading(self, config, step):
        real_reload(self, config, step)
        if step == "load":
            server.stop(grace=0)  # the pod goes away between the load and the label move

    monkeypatch.setattr(ServerClient, "reload", dies_after_loading)
    with pytest.raises(PromotionError, match="not reachable"):
        promote(str(path), f"127.0.0.1:{server.grpc_port}", "scorer", 2, "stable")
    assert path.read_text() == before and read_history(str(path)) == []
    monkeypatch.undo()
    clients = Clients(start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True))
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1
    assert {s.version for s in clients.status() if s.state == AVAILABLE} == {1}
    # The promotion, run again, goes through.
    promote(str(path), f"127.0.0.1:{clients.server.grpc_port}", "scorer", 2, "stable")
    assert clients.predict([0.5], label="stable").model_spec.version.value == 2


@pytest.mark.slow
def test_promotion_across_replicas_polling_one_config_file(model_base, start_server, tmp_path):
    """Two replicas poll one models.config (a shared volume, as deploy/k8s mounts it). Writing
    the final config at once breaks TF Serving's two-step rule, so both refuse it and keep the
    old labels; the replicated promotion writes each step and waits for both."""
    from tandem.serving.model_server.model_config import read_config, write_config
    from tandem.serving.promotion import promote_replicas, read_history, rollback

    make_model(str(model_base), 2, bias=1.0)
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    replicas = [Clients(start_server(model_config_file=str(path),
                                     model_config_file_poll_wait_seconds=0.2,
                                     allow_version_labels_for_unavailable_models=True))
                for _ in range(2)]
    addresses = [f"127.0.0.1:{r.server.grpc_port}" for r in replicas]

    one_step = read_config(str(path))
    one_step.model_config_list.config[0].model_version_policy.specific.versions[:] = [1, 2]
    one_step.model_config_list.config[0].version_labels["stable"] = 2
    original = path.read_text()
    write_config(one_step, str(path))
    time.sleep(1.0)  # several polls
    assert [r.predict([0.5], label="stable").model_spec.version.value for r in replicas] == [1, 1]
    path.write_text(original)
    time.sleep(0.5)

    steps = promote_replicas(str(path), addresses, "scorer", 2, "stable", timeout=30)
    assert steps[0] == "loaded version 2 on 2 replica(s)"
    assert "label 'stable': 1 -> 2 on 2 replica(s)" in steps
    assert [r.predict([0.5], label="stable").model_spec.version.value for r in replicas] == [2, 2]
    saved = read_config(str(path)).model_config_list.config[0]
    assert dict(saved.version_labels) == {"stable": 2}
    assert list(saved.model_version_policy.specific.versions) == [2]
    assert read_history(str(path))[-1]["replicas"] == addresses

    # The replicas read a copy (as pods read a ConfigMap): --apply puts each step there.
    local = tmp_path / "local.config"
    local.write_text(path.read_text())
    rollback(str(local), "", "scorer", replicas=addresses, timeout=30, apply=f"cp {{}} {path}")
    assert [r.predict([0.5], label="stable").model_spec.version.value for r in replicas] == [1, 1]
    assert path.read_text() == local.read_text()
    # A replica that never sees the file makes the promotion fail, naming it.
    from tandem.serving.promotion import PromotionError

    lone = Clients(start_server(model_name="scorer", model_base_path=str(model_base)))
    with pytest.raises(PromotionError, match=f"not seen on 127.0.0.1:{lone.server.grpc_port}"):
        promote_replicas(str(path), addresses + [f"127.0.0.1:{lone.server.grpc_port}"],
                         "scorer", 2, "canary", timeout=3)


def test_promote_refuses_a_version_that_does_not_load(model_base, start_server, tmp_path):
    from tandem.serving.promotion import PromotionError, promote

    bad = model_base / "4"
    shutil.copytree(model_base / "1", bad)
    (bad / "saved_model.pb").write_bytes(b"junk")
    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    before = path.read_text()
    server = start_server(model_config_file=str(path),
                          allow_version_labels_for_unavailable_models=True)
    with pytest.raises(PromotionError, match="version 4 did not load"):
        promote(str(path), f"127.0.0.1:{server.grpc_port}", "scorer", 4, "stable")
    assert path.read_text() == before
    assert Clients(server).predict([0.5], label="stable").model_spec.version.value == 1
    with pytest.raises(PromotionError, match="does not exist"):
        promote(str(path), f"127.0.0.1:{server.grpc_port}", "scorer", 99, "stable")


def test_metrics_carry_model_version_and_api(clients, model_base):
    clients.predict([0.5])
    _code(lambda: clients.predict([0.5], name="nope"))
    status, body = clients.http("/monitoring/prometheus/metrics")
    text = body.decode()
    assert status == 200
    assert 'tandem_serving_request_count_total{api="predict",model="scorer",status="OK",version="1"}' in text
    assert 'status="NOT_FOUND"' in text
    buckets = [line for line in text.splitlines()
               if line.startswith("tandem_serving_request_latency_seconds_bucket{")]
    assert any('api="predict"' in b and 'model="scorer"' in b and 'version="1"' in b
               for b in buckets)
    assert 'tandem_serving_model_events_total{event="loaded",model="scorer",version="1"} 1.0' in text
    # What the version cost when it loaded (Monitoring 6): its warmup's median latency and
    # throughput, the load time and the memory it added.
    from prometheus_client.parser import text_string_to_metric_families

    gauges = {f.name: f.samples[0] for f in text_string_to_metric_families(text)
              if f.name.startswith(("tandem_serving_warmup", "tandem_serving_load_seconds",
                                    "tandem_serving_memory_bytes"))}
    assert set(gauges) == {"tandem_serving_warmup_latency_seconds",
                           "tandem_serving_warmup_throughput", "tandem_serving_load_seconds",
                           "tandem_serving_memory_bytes"}
    assert all(g.labels == {"model": "scorer", "version": "1"} for g in gauges.values())
    latency = gauges["tandem_serving_warmup_latency_seconds"].value
    assert 0 < latency < gauges["tandem_serving_load_seconds"].value
    assert gauges["tandem_serving_warmup_throughput"].value > 0
    assert gauges["tandem_serving_memory_bytes"].value >= 0


def test_warmup_requests_run_before_a_version_serves(model_base, start_server, monkeypatch):
    from tandem.serving.model_server.servable import Servable

    clients = Clients(start_server(model_name="scorer", model_base_path=str(model_base)))
    # Warmup traffic is not user traffic: no request was counted, but the version is loaded.
    _, body = clients.http("/monitoring/prometheus/metrics")
    assert "tandem_serving_request_count_total{" not in body.decode()
    assert clients.status()[0].state == AVAILABLE

    replayed, served_meanwhile = [], []
    real_warm_up = Servable.warm_up

    def watched(self, *args):
        # While version 2 warms up, requests still go to version 1.
        served_meanwhile.append(clients.predict([0.5]).model_spec.version.value)
        replayed.append(real_warm_up(self, *args))
        return replayed[-1]

    monkeypatch.setattr(Servable, "warm_up", watched)
    make_model(str(model_base), 2, bias=1.0, warmup=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and clients.predict([0.5]).model_spec.version.value != 2:
        time.sleep(0.1)
    assert replayed == [5] and served_meanwhile == [1]

    # Warmup requests really run: one the model refuses fails the load, as in TF Serving.
    bad = model_base / "3"
    shutil.copytree(model_base / "2", bad)
    with tf.io.TFRecordWriter(str(bad / "assets.extra" / "tf_serving_warmup_requests")) as w:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
        request.inputs["wrong_input"].CopyFrom(tf.make_tensor_proto([example(1.0)]))
        w.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    _settled(clients, 3)
    status = {s.version: s for s in clients.status()}
    assert status[3].state != AVAILABLE
    assert "warmup request 0 failed" in status[3].status.error_message
    assert clients.predict([0.5]).model_spec.version.value == 2


def test_server_refuses_contradictory_flags(model_base):
    from tandem.serving.model_server.model_config import ConfigFileError
    from tandem.serving.model_server.server import ModelServer, ServerOptions

    with pytest.raises(ConfigFileError, match="not both"):
        ModelServer(ServerOptions(model_name="a", model_base_path="b", model_config_file="c"))
    with pytest.raises(ConfigFileError, match="give --model_config_file"):
        ModelServer(ServerOptions(model_name="a"))


def test_tensorflow_thread_flags_are_checked_and_never_crash_a_running_process(caplog):
    from tandem.serving.model_server.model_config import ConfigFileError
    from tandem.serving.model_server.server import configure_tensorflow_threads

    with pytest.raises(ConfigFileError, match="tensorflow_intra_op_parallelism must be >= 0"):
        configure_tensorflow_threads(-1, 0)
    tf.constant(1.0) + 1.0  # TensorFlow is running: its pools can no longer be resized
    wanted = tf.config.threading.get_inter_op_parallelism_threads() + 3
    with caplog.at_level("WARNING", logger="tandem.serving"):
        configure_tensorflow_threads(0, wanted)
    assert f"--tensorflow_inter_op_parallelism={wanted} not applied" in caplog.text
