"""Serving test fixtures: small SavedModels in the shape tandem exports, and a live server
on 127.0.0.1."""

import os

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from tandem.schemas.ports import free_port

FEATURES = {
    "x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "c": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def example(x: float, c: str = "a") -> bytes:
    e = tf.train.Example()
    e.features.feature["x"].float_list.value.append(x)
    e.features.feature["c"].bytes_list.value.append(c.encode())
    return e.SerializeToString()


class Scorer(tf.Module):
    """p = sigmoid(w * x + bias + 0.5 if c == 'b'): the bias tells versions apart."""

    def __init__(self, bias: float):
        super().__init__()
        self.w = tf.Variable(1.5)
        self.bias = tf.Variable(bias)

    def _p(self, serialized):
        f = tf.io.parse_example(serialized, FEATURES)
        logit = self.w * f["x"] + self.bias + tf.where(f["c"] == "b", 0.5, 0.0)
        return tf.sigmoid(logit)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        p = self._p(examples)
        scores = tf.stack([1 - p, p], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
        return {"probabilities": p, "scores": scores, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = self._p(inputs)
        return {"scores": tf.stack([1 - p, p], axis=1),
                "classes": tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self._p(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="dense")])
    def dense(self, dense):
        return {"sum": tf.reduce_sum(dense, axis=1) + self.bias}


def make_model(base: str, version: int, bias: float = 0.0, warmup: int = 3) -> str:
    """Write a SavedModel version directory (saved_model.pb last, like Pusher)."""
    final = os.path.join(base, str(version))
    tmp = os.path.join(base, f".tmp-{version}")
    module = Scorer(bias)
    tf.saved_model.save(module, tmp, signatures={
        "serving_default": module.serve.get_concrete_function(),
        "classification": module.classify.get_concrete_function(),
        "regression": module.regress.get_concrete_function(),
        "dense": module.dense.get_concrete_function(),
    })
    pb = os.path.join(tmp, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved.ParseFromString(f.read())
    sigs = saved.meta_graphs[0].signature_def
    sigs["classification"].method_name = "tensorflow/serving/classify"
    sigs["regression"].method_name = "tensorflow/serving/regress"
    with open(pb, "wb") as f:
        f.write(saved.SerializeToString())
    if warmup:
        os.makedirs(os.path.join(tmp, "assets.extra"))
        with tf.io.TFRecordWriter(os.path.join(tmp, "assets.extra", "tf_serving_warmup_requests")) as w:
            for i in range(warmup):
                req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
                req.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(float(i))]))
                w.write(prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=req)).SerializeToString())
    os.rename(tmp, final)
    return final


@pytest.fixture
def model_base(tmp_path):
    base = tmp_path / "models" / "scorer"
    base.mkdir(parents=True)
    make_model(str(base), 1, bias=0.0)
    return base


@pytest.fixture
def start_server():
    """start_server(**ServerOptions) -> a running ModelServer on 127.0.0.1; stopped after."""
    from tandem.serving.model_server.server import ModelServer, ServerOptions

    servers = []

    def start(**kw):
        kw.setdefault("port", free_port())
        kw.setdefault("rest_api_port", free_port())
        kw.setdefault("file_system_poll_wait_seconds", 0.2)
        server = ModelServer(ServerOptions(**kw))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=0)


class HalfPlusTwo(tf.Module):
    """TF Serving's canonical test model, rebuilt: y = 0.5 x + 2 on `x` of shape [-1, 1], with
    TF2-style regress/classify signatures (method_name predict, as TF2 exports them), a
    `*_bytes` output, a scalar string output and an int64 input."""

    def __init__(self):
        super().__init__()
        self.a, self.b = tf.Variable(0.5), tf.Variable(2.0)

    def _x(self, serialized):
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        y = self.a * self._x(inputs) + self.b
        return {"scores": tf.concat([y, y + 1.0], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def describe(self, x):
        raw = tf.strings.as_string(x[:, 0]) + b"\xff"  # not UTF-8: only b64 can carry it
        return {"y_bytes": raw, "model": tf.constant("half_plus_two")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def count(self, n):
        return {"next": n + 1}


def make_half_plus_two(base: str, version: int = 1) -> str:
    module = HalfPlusTwo()
    path = os.path.join(base, str(version))
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.predict.get_concrete_function(),
        "regress_x_to_y": module.regress.get_concrete_function(),
        "classify_x_to_y": module.classify.get_concrete_function(),
        "describe": module.describe.get_concrete_function(),
        "count": module.count.get_concrete_function(),
    })
    return path


def make_tf1_half_plus_two(base: str, version: int = 1) -> str:
    """TF Serving's saved_model_half_plus_two_cpu, rebuilt: a TF1 graph, y = 0.5 x + 2 on x of
    static shape (?, 1), plus an `outer` signature (x times [[1, 2]]) whose matmul needs x to
    be a matrix."""
    v1 = tf.compat.v1
    path = os.path.join(base, str(version))
    builder = v1.saved_model.builder.SavedModelBuilder(path)
    with v1.Session(graph=tf.Graph()) as session:
        a, b = v1.Variable(0.5, name="a"), v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, name="x", shape=[None, 1])
        y = tf.identity(a * x + b, name="y")
        outer = tf.matmul(x, tf.constant([[1.0, 2.0]]), name="outer")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        session.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": build({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            "outer": build({"x": info(x)}, {"outer": info(outer)}, "tensorflow/serving/predict"),
        })
    builder.save()
    return path


def make_tf1_half_plus_three(base: str, version: int = 1) -> str:
    """TF Serving's saved_model_half_plus_three, rebuilt: a TF1 graph (y = 0.5 x + 3) with
    regress and predict signatures whose TensorInfos record no shape, as models exported by
    older TensorFlow do (which TF2's loader reads as rank 0)."""
    v1 = tf.compat.v1
    path = os.path.join(base, str(version))
    builder = v1.saved_model.builder.SavedModelBuilder(path)
    with v1.Session(graph=tf.Graph()) as session:
        a, c = v1.Variable(0.5, name="a"), v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example", shape=[None])
        x = tf.identity(v1.parse_example(
            serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"], name="x")
        y = tf.identity(a * x + c, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        session.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": build({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            "tensorflow/serving/regress": build({"inputs": info(serialized)}, {"outputs": info(y)},
                                                "tensorflow/serving/regress"),
        })
    builder.save()
    pb = os.path.join(path, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved.ParseFromString(f.read())
    for sig in saved.meta_graphs[0].signature_def.values():
        for tensor in list(sig.inputs.values()) + list(sig.outputs.values()):
            tensor.ClearField("tensor_shape")
    with open(pb, "wb") as f:
        f.write(saved.SerializeToString())
    return path
