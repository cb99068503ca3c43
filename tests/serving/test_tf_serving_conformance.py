"""The embedded server against TF Serving's own rules (tensorflow_serving 2.16: main.cc,
http_rest_api_util.cc, predict_util.cc, classifier.cc, multi_inference.cc, server_core.cc),
on a rebuilt half_plus_two, with real gRPC and HTTP clients on 127.0.0.1."""

import http.client
import json
import os
import random

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from .conftest import (
    make_half_plus_two,
    make_model,
    make_tf1_half_plus_three,
    make_tf1_half_plus_two,
)
from .test_server import Clients, _code, _config_file

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def hp2(tmp_path, start_server):
    base = tmp_path / "models" / "half_plus_two"
    base.mkdir(parents=True)
    make_half_plus_two(str(base), 123)
    return Clients(start_server(model_name="half_plus_two", model_base_path=str(base)))


def _http(clients, method, path, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", clients.server.rest_port, timeout=30)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    return response.status, response.read(), dict(response.getheaders())


def _predict(clients, signature="", output_filter=(), **inputs):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name="half_plus_two", signature_name=signature))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return clients.predict_stub.Predict(request, timeout=30)


def _x_example(x: float) -> tf.train.Example:
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(x)
    return example


def _regress_request(model: str, signature: str, x: float) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(
        name=model, signature_name=signature))
    request.input.example_list.examples.add().CopyFrom(_x_example(x))
    return request


def test_tf2_style_classify_and_regress_signatures_are_served(hp2, tmp_path, start_server):
    """TF2 exports every signature with method_name predict; TF Serving 2.16 serves them
    through Classify/Regress unless --enable_signature_method_name_check."""
    regress = _regress_request("half_plus_two", "regress_x_to_y", 4.0)
    assert hp2.predict_stub.Regress(regress, timeout=30).result.regressions[0].value == 4.0
    classify = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(
        name="half_plus_two", signature_name="classify_x_to_y"))
    classify.input.example_list.examples.add().CopyFrom(_x_example(4.0))
    scores = [c.score for c in hp2.predict_stub.Classify(classify, timeout=30)
              .result.classifications[0].classes]
    assert scores == [4.0, 5.0]

    strict = Clients(start_server(model_name="half_plus_two",
                                  model_base_path=str(tmp_path / "models" / "half_plus_two"),
                                  enable_signature_method_name_check=True))
    code, details = _code(lambda: strict.predict_stub.Regress(regress, timeout=30))
    assert code == INVALID
    assert ("Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/predict") in details


def test_a_tf1_model_with_unshaped_signatures_loads_and_serves(tmp_path, start_server):
    """TF Serving's half_plus_three: TF2's loader would build its signatures from the rank-0
    shapes they record and fail; the embedded server runs TF1 models in a session."""
    base = tmp_path / "models" / "half_plus_three"
    base.mkdir(parents=True)
    make_tf1_half_plus_three(str(base), 123)
    clients = Clients(start_server(model_name="half_plus_three", model_base_path=str(base)))
    regress = _regress_request("half_plus_three", "tensorflow/serving/regress", 2.0)
    assert clients.predict_stub.Regress(regress, timeout=30).result.regressions[0].value == 4.0
    status, raw, _ = _http(clients, "POST", "/v1/models/half_plus_three:predict",
                           json.dumps({"instances": [[1.0], [2.0]]}).encode())
    assert status == 200 and json.loads(raw) == {"predictions": [[3.5], [4.0]]}, raw
    status, raw, _ = _http(clients, "POST", "/v1/models/half_plus_three:regress", json.dumps(
        {"signature_name": "tensorflow/serving/regress", "examples": [{"x": [4]}]}).encode())
    assert status == 200 and json.loads(raw) == {"results": [5.0]}, raw
    bad = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="half_plus_three"))
    bad.inputs["x"].CopyFrom(tf.make_tensor_proto([b"nope"]))
    code, details = _code(lambda: clients.predict_stub.Predict(bad, timeout=30))
    assert code == INVALID and "dtype string" in details


def _nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


def test_a_tf1_graph_is_fed_as_tf_servings_session_feeds_it(tmp_path, start_server):
    """TF Serving's saved_model_half_plus_two_cpu: x is a (?, 1) placeholder, and C++'s
    Session::Run feeds a flat (3,) batch as it is (api_rest.md's own example). An op that
    cannot use a shape refuses it in the graph: INVALID_ARGUMENT, as TF Serving answers."""
    base = tmp_path / "models" / "half_plus_two"
    base.mkdir(parents=True)
    make_tf1_half_plus_two(str(base), 1)
    clients = Clients(start_server(model_name="half_plus_two", model_base_path=str(base)))
    status, raw, _ = _http(clients, "POST", "/v1/models/half_plus_two:predict",
                           json.dumps({"instances": [1.0, 2.0, 5.0]}).encode())
    assert status == 200 and json.loads(raw) == {"predictions": [2.5, 3.0, 4.5]}, raw
    flat = _predict(clients, x=np.array([1.0, 2.0, 5.0], np.float32)).outputs["y"]
    assert [d.size for d in flat.tensor_shape.dim] == [3]
    assert tf.make_ndarray(flat).tolist() == [2.5, 3.0, 4.5]

    matrix = _predict(clients, "outer", x=np.array([[1.0], [3.0]], np.float32)).outputs["outer"]
    assert tf.make_ndarray(matrix).tolist() == [[1.0, 2.0], [3.0, 6.0]]
    code, details = _code(lambda: _predict(clients, "outer", x=np.array([1.0, 3.0], np.float32)))
    assert code == INVALID and "In[0]" in details, details  # MatMul's own words
    status, raw, _ = _http(clients, "POST", "/v1/models/half_plus_two:predict", json.dumps(
        {"signature_name": "outer", "instances": [1.0, 3.0]}).encode())
    assert status == 400 and "In[0]" in json.loads(raw)["error"], raw

    # Past numpy's 32 dimensions Python cannot feed a session (TF2 models take them, see
    # test_deeply_nested_instances_are_a_tensor_of_that_rank): a 400 that says so, not a 500.
    status, raw, _ = _http(clients, "POST", "/v1/models/half_plus_two:predict",
                           json.dumps({"instances": _nested(1.0, 40)}).encode())
    assert status == 400 and "40 dimensions" in json.loads(raw)["error"], raw


def test_floats_are_written_as_tf_servings_json_writer_writes_them(hp2):
    """json_tensor.cc's WriteDecimal: six significant digits (%g) when they read back as the
    same float32, else nine; '.0' after a whole number; an exponent from 1e6 on, as %g puts
    one. Predict, Classify and Regress alike."""
    third = float(np.float32(1 / 3))  # y = 2.16666675 as float32; "2.16667" is another float
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict", json.dumps(
        {"instances": [[third], [17999996.0], [-4.0], [0.1]]}).encode())
    assert status == 200 and raw == b'{"predictions":[[2.16666675],[9e+06],[0.0],[2.05]]}', raw
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:regress", json.dumps(
        {"signature_name": "regress_x_to_y", "examples": [{"x": [third]}]}).encode())
    assert status == 200 and raw == b'{"results":[2.16666675]}', raw
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:classify", json.dumps(
        {"signature_name": "classify_x_to_y", "examples": [{"x": [third]}]}).encode())
    assert status == 200 and raw == b'{"results":[[["",2.16666675],["",3.16666675]]]}', raw


def test_deeply_nested_instances_are_a_tensor_of_that_rank(hp2):
    """TF Serving's JSON parser takes any nesting and TensorFlow up to 254 dimensions, past
    numpy's 32: a [1]*200 batch through an element-wise model is answered at that depth, over
    REST and gRPC. Deeper, or ragged, is TF Serving's 400."""
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict",
                           json.dumps({"instances": _nested(1.0, 200)}).encode())
    assert status == 200 and json.loads(raw) == {"predictions": _nested(2.5, 200)}, raw[:200]

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="half_plus_two"))
    x = request.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    for _ in range(200):
        x.tensor_shape.dim.add(size=1)
    x.float_val.append(4.0)
    y = hp2.predict_stub.Predict(request, timeout=30).outputs["y"]
    assert [d.size for d in y.tensor_shape.dim] == [1] * 200 and list(y.float_val) == [4.0]

    for body, message in [
        ({"instances": _nested(1.0, 255)}, "tensor parsing error: x"),  # over 254 dimensions
        ({"instances": _nested([[1.0], [2.0, 3.0]], 40)}, "Encountered list at unexpected size"),
        ({"inputs": _nested([[1.0], 2.0], 40)}, "found at incorrect level"),
    ]:
        status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict",
                               json.dumps(body).encode())
        assert status == 400 and message in json.loads(raw)["error"], raw


def test_serialization_as_tensor_content_changes_how_predict_outputs_travel(hp2, tmp_path,
                                                                            start_server):
    """--enable_serialization_as_tensor_content (TF Serving 2.19, server.cc): Predict's outputs
    as AsProtoTensorContent writes them, strings included; without it the typed fields. The
    REST API answers the same JSON either way."""
    packed = Clients(start_server(model_name="half_plus_two",
                                  model_base_path=str(tmp_path / "models" / "half_plus_two"),
                                  enable_serialization_as_tensor_content=True))
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    plain_y = _predict(hp2, x=x).outputs["y"]
    assert list(plain_y.float_val) == [2.5, 3.0, 4.5] and not plain_y.tensor_content
    packed_y = _predict(packed, x=x).outputs["y"]
    assert not packed_y.float_val
    # Byte for byte what TensorFlow's C++ Tensor::AsProtoTensorContent writes.
    expected = tf.io.serialize_tensor(tf.constant([[2.5], [3.0], [4.5]])).numpy()
    assert packed_y.SerializeToString() == expected

    plain, outputs = (_predict(c, "describe", x=x).outputs for c in (hp2, packed))
    assert list(plain["y_bytes"].string_val) and not plain["y_bytes"].tensor_content
    assert not outputs["y_bytes"].string_val and not outputs["model"].string_val
    for name in ("y_bytes", "model"):  # read back by C++'s Tensor::FromProto
        back = tf.io.parse_tensor(outputs[name].SerializeToString(), tf.string).numpy()
        np.testing.assert_array_equal(back, tf.make_ndarray(plain[name]))

    body = json.dumps({"signature_name": "describe", "inputs": {"x": x.tolist()}}).encode()
    plain_json, packed_json = (json.loads(_http(c, "POST", "/v1/models/half_plus_two:predict",
                                                body)[1]) for c in (hp2, packed))
    assert packed_json == plain_json and plain_json["outputs"]["model"] == "half_plus_two"


def test_rest_paths_follow_tf_serving(hp2):
    body = json.dumps({"instances": [[1.0]]}).encode()
    assert _http(hp2, "POST", "/V1/Models/half_plus_two:PREDICT", body)[0] == 200  # any case
    assert _http(hp2, "POST", "/v1/models/half%5Fplus%5Ftwo:predict", body)[0] == 200  # decoded
    assert _http(hp2, "GET", "/v1/models/half_plus_two/versions/123")[0] == 200
    for method, path, message in [
        ("GET", "/v1/models", "Missing model name in request."),
        ("GET", "/v1/models/half_plus_two/version/50", "Malformed request: GET"),
        ("GET", "/v1/models/half_plus_two/label/x", "Malformed request: GET"),
        ("POST", "/v1/models/half_plus_two", "Malformed request: POST"),
        ("GET", "/v1/models/half_plus_two:predict", "Malformed request: GET"),
        ("PUT", "/v1/models/half_plus_two:predict", "Malformed request: PUT"),
        ("GET", "/v1/models/half_plus_two/versions/99999999999999999999",
         "Failed to convert version: 99999999999999999999 to numeric."),
    ]:
        status, raw, _ = _http(hp2, method, path, body if method != "GET" else b"")
        assert status == 400, (method, path, raw)
        assert message in json.loads(raw)["error"], raw
    assert _http(hp2, "GET", "/v2/models/half_plus_two")[0] == 404
    status, raw, _ = _http(hp2, "GET", "/v1/models/half_plus_two/labels/nope")
    assert status == 400 and "Unrecognized servable version label: nope" in json.loads(raw)["error"]


def test_a_flat_list_for_a_column_input_is_answered_as_tf_serving_answers_it(hp2):
    """api_rest.md's own example: half_plus_two's x is [-1, 1], and TF Serving feeds
    {"instances": [2.0, 3.0, 4.0]} as it is; so does gRPC with a [1]-shaped x."""
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict",
                           json.dumps({"instances": [2.0, 3.0, 4.0]}).encode())
    assert status == 200 and json.loads(raw) == {"predictions": [3.0, 3.5, 4.0]}, raw
    response = _predict(hp2, x=np.array([2.0], np.float32))
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [3.0]


def test_flat_instances_and_float_text_as_tf_serving_prints_them(hp2):
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict",
                           json.dumps({"instances": [[1.0], [0.0002]]}).encode())
    assert status == 200, raw
    # Six significant digits when they read back as the same float32, as TF Serving writes it.
    assert raw.decode().replace(" ", "") == '{"predictions":[[2.5],[2.0001]]}'
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:regress", json.dumps(
        {"signature_name": "regress_x_to_y", "examples": [{"x": [0.0002]}]}).encode())
    assert status == 200 and json.loads(raw) == {"results": [2.0001]}, raw


def test_bytes_outputs_are_base64_and_a_scalar_string_output_is_answered(hp2):
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict", json.dumps(
        {"signature_name": "describe", "inputs": {"x": [[1.5]]}}).encode())
    assert status == 200, raw
    outputs = json.loads(raw)["outputs"]
    assert outputs["model"] == "half_plus_two"
    import base64

    assert base64.b64decode(outputs["y_bytes"][0]["b64"]) == b"1.500000\xff"
    # In the row format a scalar output has no rows to go in: a clear 400, never a 500.
    status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict", json.dumps(
        {"signature_name": "describe", "instances": [[1.5]]}).encode())
    assert status == 400 and "columnar" in json.loads(raw)["error"]


def test_metadata_json_is_tf_servings(hp2):
    status, raw, _ = _http(hp2, "GET", "/v1/models/half_plus_two/metadata")
    assert status == 200
    body = json.loads(raw)
    assert "@type" not in raw.decode()
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "",
                                  "version": "123"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict" and sig["defaults"] == {}
    x = sig["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                                 "unknown_rank": False}


def test_output_filter_aliases_are_checked_as_tf_serving_checks_them(hp2):
    assert list(_predict(hp2, output_filter=["y"], x=[[1.0]]).outputs) == ["y"]
    code, details = _code(lambda: _predict(hp2, output_filter=["y", "y"], x=[[1.0]]))
    assert code == INVALID and details.startswith("duplicate output tensor alias: y")
    code, details = _code(lambda: _predict(hp2, output_filter=["z"], x=[[1.0]]))
    assert code == INVALID
    assert details.startswith("output tensor alias not found in signature: z Outputs expected "
                              "to be in the set {y}.")


def test_hostile_json_gets_400_never_500(hp2):
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    for body in [
        deep,
        json.dumps({"signature_name": 7, "instances": [[1.0]]}).encode(),
        json.dumps({"signature_name": "count", "instances": [2**70]}).encode(),
        json.dumps({"instances": [[1.0]], "signature_name": ["serving_default"]}).encode(),
        b'{"instances": [[1.0]]' + b"}" * 3,
        "{\"instances\": [\"\udc00\"]}".encode("utf-8", "surrogatepass"),
    ]:
        status, raw, _ = _http(hp2, "POST", "/v1/models/half_plus_two:predict", body)
        assert status == 400, (body[:80], raw)
        assert json.loads(raw)["error"]
    # Nesting that parses but goes where a string or a feature value belongs.
    deep, deep_text = _nested([], 600), _nested("a", 600)
    for verb, body in [
        ("predict", {"signature_name": "regress_x_to_y", "instances": [["a"], deep_text]}),
        ("predict", {"signature_name": "regress_x_to_y", "inputs": deep_text}),
        ("classify", {"signature_name": "classify_x_to_y", "examples": [{"x": [1.0, deep]}]}),
        ("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": {"b64": deep}}]}),
    ]:
        status, raw, _ = _http(hp2, "POST", f"/v1/models/half_plus_two:{verb}",
                               json.dumps(body).encode())
        assert status == 400 and json.loads(raw)["error"], (verb, raw[:200])


def test_a_start_up_config_with_labels_needs_tf_servings_flag(model_base, start_server, tmp_path):
    from tandem.serving.model_server.model_config import ConfigFileError

    path = _config_file(tmp_path, model_base, [1], {"stable": 1})
    with pytest.raises(ConfigFileError, match="--allow_version_labels_for_unavailable_models"):
        start_server(model_config_file=str(path))
    clients = Clients(start_server(model_config_file=str(path),
                                   allow_version_labels_for_unavailable_models=True))
    assert clients.predict([0.5], label="stable").model_spec.version.value == 1


def test_tf_servings_own_monitoring_config_file_is_read(model_base, start_server, tmp_path):
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config: {\n  enable: true,\n  path: "/metrics/here"\n}\n')
    clients = Clients(start_server(model_name="scorer", model_base_path=str(model_base),
                                   monitoring_config_file=str(config)))
    status, body = clients.http("/metrics/here")
    assert status == 200 and b"tandem_serving_" in body


def test_every_tf_serving_flag_is_accepted(model_base, tmp_path, capsys):
    """A stock tensorflow_model_server command line parses; flags that do nothing here say so
    in one line each."""
    from tandem.pipeline.cli import build_parser
    from tandem.serving.model_server.flags import FLAGS, ignored

    values = {int: "3", float: "0.5", str: "x"}

    def other_than_default(flag):
        return str(not flag.default).lower() if flag.type is bool else values[flag.type]

    argv = ["serve", "models"] + [f"--{f.name}={other_than_default(f)}" for f in FLAGS
                                  if f.name != "version"]
    args = build_parser().parse_args(argv)
    assert len(FLAGS) == 47  # main.cc of TF Serving 2.16.1, and 2.19's tensor_content flag
    notices = ignored(args)
    unused = [f.name for f in FLAGS if not f.implemented]
    assert len(notices) == len(unused) and all(
        any(f"--{name}=" in n for n in notices) for name in unused)
    assert args.enable_signature_method_name_check is True and args.num_load_threads == 3
    from tandem.serving.model_server.server import ServerOptions

    assert args.enable_serialization_as_tensor_content is True
    assert hasattr(ServerOptions(), "enable_serialization_as_tensor_content")  # reaches the server


def test_implemented_flags_take_effect(tmp_path, start_server, monkeypatch):
    """Each flag passed here is seen doing what it says: loads overlap, warmup records are
    replayed the number of times asked, gRPC answers on the UNIX socket, REST answers carry
    CORS headers, and the server's channel arguments reach the connection."""
    import shutil
    import threading
    import time

    from tandem.serving.model_server.manager import ModelManager
    from tandem.serving.model_server.servable import Servable

    from .conftest import example

    base = tmp_path / "models"
    (base / "a").mkdir(parents=True)
    make_model(str(base / "a"), 1, bias=0.0, warmup=1)
    for name in ("b", "c"):
        shutil.copytree(base / "a", base / name)
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{n}" base_path: "{base / n}" model_platform: "tensorflow" }}\n'
        for n in ("a", "b", "c")) + "}\n")

    # --num_load_threads=2: two loads in flight at once, never three. The first load waits
    # (up to 5 s) for a second to start, which only a parallel loader gives it.
    lock, both, in_flight, peak = threading.Lock(), threading.Event(), [0], [0]
    real_load = ModelManager._load

    def load(self, *args):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            if in_flight[0] >= 2:
                both.set()
        both.wait(5)
        try:
            return real_load(self, *args)
        finally:
            with lock:
                in_flight[0] -= 1

    # --num_request_iterations_for_warmup=2: the one warmup record runs twice per model.
    warmup_calls: dict[str, int] = {}
    real_predict = Servable.predict

    def predict(self, *args, **kw):
        warmup_calls[self.name] = warmup_calls.get(self.name, 0) + 1
        return real_predict(self, *args, **kw)

    monkeypatch.setattr(ModelManager, "_load", load)
    monkeypatch.setattr(Servable, "predict", predict)
    sock = tmp_path / "grpc.sock"
    server = start_server(model_config_file=str(config), num_load_threads=2,
                          grpc_socket_path=str(sock), rest_api_enable_cors_support=True,
                          grpc_channel_arguments="grpc.max_connection_idle_ms=100",
                          num_request_iterations_for_warmup=2)
    monkeypatch.setattr(Servable, "predict", real_predict)
    assert {n: e.available() for n, e in server.manager.models().items()} == {
        "a": [1], "b": [1], "c": [1]}
    assert peak[0] == 2, f"at most {peak[0]} load(s) at once with --num_load_threads=2"
    assert warmup_calls == {"a": 2, "b": 2, "c": 2}

    # --grpc_socket_path: gRPC on the UNIX socket.
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="b"))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(0.5)]))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"unix:{sock}"))
    assert stub.Predict(request, timeout=30).model_spec.version.value == 1

    # --rest_api_enable_cors_support: the header on a REST answer.
    _, _, headers = _http(Clients(server), "GET", "/v1/models/a")
    assert headers.get("Access-Control-Allow-Origin") == "*"

    # --grpc_channel_arguments: grpc.max_connection_idle_ms=100 makes the server close an
    # idle connection (GOAWAY), so the client's channel drops from READY back to IDLE; with
    # the default (no idle limit) it stays READY.
    states: list = []
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        channel.subscribe(states.append)
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        ready, idle = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.IDLE
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (ready in states and states[-1] == idle):
            time.sleep(0.05)
        channel.unsubscribe(states.append)
    assert ready in states and states[-1] == idle, states


def test_fuzzed_requests_never_get_500_or_internal(hp2):
    """Random JSON bodies on every REST route and random bytes on every gRPC method: each
    gets an answer, and never HTTP 500, gRPC INTERNAL or UNKNOWN."""
    rng = random.Random(20261128)

    def value(depth=0):
        kind = rng.randrange(9 if depth < 4 else 5)
        if kind == 0:
            return rng.choice([0, -1, 2**63, -(2**64), 1.5, 1e308, float("nan")])
        if kind == 1:
            return rng.choice(["", "x", "serving_default", "b64", "\u00e9", "\ud800x"[1:]])
        if kind == 2:
            return rng.choice([True, False, None])
        if kind == 3:
            return {"b64": rng.choice(["AAAA", "%%%", "", "eA=="])}
        if kind == 4:
            return []
        if kind in (5, 6):
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        keys = ["instances", "inputs", "signature_name", "examples", "context", "x", "y"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(4))}

    paths = ["/v1/models/half_plus_two:predict", "/v1/models/half_plus_two:classify",
             "/v1/models/half_plus_two:regress", "/v1/models/half_plus_two/versions/123:predict",
             "/v1/models/half_plus_two/labels/x:regress"]
    seen = set()
    for i in range(300):
        body = value()
        if isinstance(body, dict) and rng.random() < 0.5:
            body.setdefault("signature_name", rng.choice(["describe", "count", "regress_x_to_y",
                                                          "classify_x_to_y", ""]))
        raw = json.dumps(body, allow_nan=True).encode() if i % 10 else os.urandom(i % 50)
        status, answer, _ = _http(hp2, "POST", rng.choice(paths), raw)
        seen.add(status)
        assert status != 500 and "error" in json.loads(answer) or status == 200, (body, answer)

    channel = grpc.insecure_channel(f"127.0.0.1:{hp2.server.grpc_port}")
    methods = ["Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata"]
    for i in range(200):
        call = channel.unary_unary(f"/tensorflow.serving.PredictionService/{rng.choice(methods)}")
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        if i % 4 == 0:  # a valid request with one random byte changed
            good = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="half_plus_two"))
            good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2, 1), np.float32)))
            data = bytearray(good.SerializeToString())
            data[rng.randrange(len(data))] = rng.randrange(256)
            payload = bytes(data)
        try:
            call(payload, timeout=30)
        except grpc.RpcError as e:
            assert e.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                payload, e.details())
    assert 400 in seen


def test_the_server_binds_loopback_only_by_default(hp2):
    import psutil

    ports = {hp2.server.grpc_port, hp2.server.rest_port}
    listening = [c for c in psutil.Process().connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in listening} == ports
    import ipaddress

    def loopback(ip):
        address = ipaddress.ip_address(ip)
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
        return (mapped or address).is_loopback

    assert all(loopback(c.laddr.ip) for c in listening), listening
