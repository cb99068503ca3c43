"""Gateway test fixtures: listening data from the generator, a model that needs the decorated
features, the embedded model server, a gateway in front of it, a real redis-server, and
multi-class and regression models tandem trained."""

import dataclasses
import io
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.conftest import ROOT
from tests.serving.conftest import free_port

SCHEMA = os.path.join(ROOT, "schemas", "listening", "schema.pbtxt")
# What the listening model reads: request-time features and decorated ones, all required
# (as a schema with `shape` makes them), so an undecorated example cannot be scored.
PARSE = {
    "hour_of_day": tf.io.FixedLenFeature([1], tf.int64),
    "age": tf.io.FixedLenFeature([1], tf.int64),
    "duration_s": tf.io.FixedLenFeature([1], tf.float32),
    "country": tf.io.FixedLenFeature([1], tf.string),
}


class ListeningScorer(tf.Module):
    def __init__(self, bias: float):
        super().__init__()
        self.bias = tf.Variable(bias)

    def _p(self, serialized):
        f = tf.io.parse_example(serialized, PARSE)
        logit = (0.03 * tf.cast(f["age"][:, 0] - 40, tf.float32)
                 + 0.004 * (f["duration_s"][:, 0] - 210.0)
                 + tf.where(f["country"][:, 0] == "US", 0.3, 0.0)
                 - 0.02 * tf.cast(f["hour_of_day"][:, 0], tf.float32) + self.bias)
        return tf.sigmoid(logit)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        p = self._p(examples)
        return {"probabilities": p, "scores": tf.stack([1 - p, p], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = self._p(inputs)
        return {"scores": tf.stack([1 - p, p], axis=1),
                "classes": tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])}


def make_listening_model(base: str, version: int, bias: float = 0.0) -> str:
    from tensorflow.core.protobuf import saved_model_pb2

    final = os.path.join(base, str(version))
    tmp = os.path.join(base, f".tmp-{version}")
    module = ListeningScorer(bias)
    tf.saved_model.save(module, tmp, signatures={
        "serving_default": module.serve.get_concrete_function(),
        "classification": module.classify.get_concrete_function()})
    pb = os.path.join(tmp, "saved_model.pb")
    saved = saved_model_pb2.SavedModel.FromString(open(pb, "rb").read())
    saved.meta_graphs[0].signature_def["classification"].method_name = \
        "tensorflow/serving/classify"
    with open(pb, "wb") as f:
        f.write(saved.SerializeToString())
    os.rename(tmp, final)
    return final


@pytest.fixture(scope="session")
def listening_data(tmp_path_factory):
    """3,000 decorated training examples and the feature sources they were joined from."""
    from tandem.pipeline.datasets import listening

    out = tmp_path_factory.mktemp("gateway-data")
    listening.generate(str(out), 3000, seed=11)
    return out


def training_examples(data_dir, n: int | None = None) -> list[bytes]:
    path = os.path.join(data_dir, "span-1", "data-00000-of-00001.tfrecord.gz")
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    return records[:n] if n else records


def request_part(serialized: bytes) -> tf.train.Example:
    """What a client sends for a training example: keys and request-time features only."""
    from tandem.pipeline.datasets.listening import REQUEST_FEATURES

    full = tf.train.Example.FromString(serialized)
    request = tf.train.Example()
    for name in REQUEST_FEATURES:
        if name in full.features.feature:
            request.features.feature[name].CopyFrom(full.features.feature[name])
    return request


def without_label(serialized: bytes) -> bytes:
    """A training example as the gateway serves it: the generator appends the label as a
    fragment of its own, so the served example is the training bytes without that suffix."""
    from tandem.pipeline.datasets.listening import LABEL, label_fragment

    label = tf.train.Example.FromString(serialized).features.feature[LABEL].int64_list.value[0]
    suffix = label_fragment(label)
    assert serialized.endswith(suffix)
    return serialized[:-len(suffix)]


@pytest.fixture(scope="session")
def listening_models(tmp_path_factory):
    """Model 'listening' version 1 (A) and model 'candidate' version 1 (B, a different bias)."""
    root = tmp_path_factory.mktemp("gateway-models")
    for name, bias in (("listening", 0.0), ("candidate", 0.4)):
        os.makedirs(root / name)
        make_listening_model(str(root / name), 1, bias)
    return root


@pytest.fixture
def model_server(listening_models, start_server, tmp_path):
    """The embedded model server with A and B on 127.0.0.1."""
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{n}" base_path: "{listening_models / n}" model_platform: '
        '"tensorflow" }\n' for n in ("listening", "candidate")) + "}\n")
    return start_server(model_config_file=str(config))


def gateway_config(tmp_path, data_dir, address: str, **sections) -> str:
    """A gateway config file like deploy/gateway/listening.yaml, pointed at the test's
    servers and data; `sections` override whole keys (e.g. validate={...})."""
    with open(os.path.join(ROOT, "deploy", "gateway", "listening.yaml")) as f:
        config = yaml.safe_load(f)
    config["primary"]["address"] = address
    config["schema"] = SCHEMA
    config["decorate"]["sqlite"] = os.path.join(data_dir, "features.sqlite")
    config["log"]["dir"] = str(tmp_path / "logs")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def start_gateway():
    """start_gateway(config_path, rest=True) -> a running GatewayServer; stopped after."""
    from tandem.serving.gateway.config import load_config
    from tandem.serving.gateway.server import GatewayServer

    servers = []

    def start(path: str, rest: bool = True, **kw):
        server = GatewayServer(load_config(path), port=free_port(),
                               rest_api_port=free_port() if rest else 0, **kw)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def stub(port: int):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(examples: list[bytes], model: str = "listening"):
    from tensorflow_serving.apis import model_pb2, predict_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    return request


class RedisServer:
    """A real redis-server on a free loopback port, no persistence; stop() ends it."""

    def __init__(self):
        binary = shutil.which("redis-server")
        assert binary, ("redis-server is not installed: `make test` installs it (apt-get "
                        "install redis-server)")
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}"
        self.proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server shared by the session's tests."""
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which the test may stop; stopped after it."""
    server = RedisServer()
    yield server
    server.stop()


class DelayProxy:
    """A PredictionService in front of a real model server that waits `delay_s` before
    forwarding each call: model B made slow, for the isolation tests. stop() makes B gone."""

    def __init__(self, target: str, delay_s: float):
        from concurrent import futures

        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self.delay_s, self.calls = delay_s, 0
        upstream = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(target))

        def predict(request, context):
            self.calls += 1
            time.sleep(self.delay_s)
            return upstream.Predict(request, timeout=30)

        handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, request_deserializer=predict_pb2.PredictRequest.FromString,
                response_serializer=predict_pb2.PredictResponse.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=0)


@dataclasses.dataclass
class TrainedTabular:
    """A model tandem trained and exported, served from `base` (version 1 under it)."""

    problem_type: str
    base: str
    schema: str
    examples: list[bytes]  # held-out requests: x1, x2, color; no label
    labels: list  # their labels as the product would send them (class names, amounts)


def _tabular_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n), rng.choice(["red", "green", "blue"], n)


def _train_tabular(root, problem_type: str) -> TrainedTabular:
    """600 rows of x1, x2 and a colour, a minimal config, a proposed schema and a run
    through the Trainer (in-process Beam), as a user makes it; the Trainer's export is
    served as version 1."""
    from tandem.pipeline import cli
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import run
    from tandem.schemas.exit_status import OK as EXIT_OK

    def label(x1, x2, color):
        if problem_type == "regression":
            return np.round(50 + 10 * x1 + 5 * x2 + 3 * (color == "red"), 3)
        return np.where(x1 > 0.3, "high", np.where(x2 > 0, "mid", "low"))

    x1, x2, color = _tabular_rows(800, seed=3)
    y = label(x1, x2, color)
    os.makedirs(root / "data")
    with open(root / "data" / "data.csv", "w") as f:
        f.write("x1,x2,color,y\n")
        f.writelines(f"{a:.4f},{b:.4f},{c},{t}\n" for a, b, c, t in
                     zip(x1[:600], x2[:600], color[:600], y[:600], strict=True))
    config = {"name": problem_type.split("_")[0], "label": "y", "problem_type": problem_type,
              "data": {"location": str(root / "data"), "format": "csv", "pattern": "*.csv"},
              "schema": str(root / "schema.pbtxt"), "output_dir": str(root / "out"),
              "beam": {"direct_running_mode": "in_memory"}, "model": {"epochs": 4}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["schema", "propose", "--config", str(root / "config.yaml"),
                     "--out", config["schema"]]) == 0
    out = io.StringIO()
    result = run(load_config(str(root / "config.yaml")), until="train", out=out)
    assert result.exit_code == EXIT_OK, out.getvalue()
    shutil.copytree(os.path.join(result.outputs["model"].uri, "Format-Serving"),
                    root / "models" / "1")
    examples = []
    for a, b, c in zip(x1[600:], x2[600:], color[600:], strict=True):
        e = tf.train.Example()
        e.features.feature["x1"].float_list.value.append(float(round(a, 4)))
        e.features.feature["x2"].float_list.value.append(float(round(b, 4)))
        e.features.feature["color"].bytes_list.value.append(c.encode())
        examples.append(e.SerializeToString())
    return TrainedTabular(problem_type, str(root / "models"), config["schema"], examples,
                          y[600:].tolist())


@pytest.fixture(scope="session")
def trained_tabular(tmp_path_factory):
    """trained_tabular(problem_type) -> TrainedTabular: a multi-class model with string
    labels or a regression model, trained once per session on first use (about a minute
    each)."""
    made: dict[str, TrainedTabular] = {}

    def get(problem_type: str) -> TrainedTabular:
        if problem_type not in made:
            made[problem_type] = _train_tabular(tmp_path_factory.mktemp(problem_type),
                                                problem_type)
        return made[problem_type]
    return get
