"""Server-side batching: the scheduler on its own (a numpy function stands in for the graph)
and the server with --enable_batching under concurrent gRPC clients."""

import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from tandem.serving.errors import InvalidArgument, Unavailable
from tandem.serving.model_server.batching import (
    BatchingConfigError,
    BatchingOptions,
    BatchScheduler,
    parse_batching_parameters,
)
from tandem.serving.model_server.model_config import ConfigFileError

from .conftest import example


class Graph:
    """y = 2x per row; records the batch sizes it was called with; rejects negatives."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[int] = []
        self.gate = gate

    def __call__(self, inputs):
        if self.gate is not None:
            self.gate.wait(10)
        x = inputs["x"]
        self.calls.append(x.shape[0])
        if (x < 0).any():
            raise InvalidArgument(f"negative input in a batch of {x.shape[0]}")
        return {"y": x * 2, "n": np.full(x.shape[0], x.shape[0])}


@pytest.fixture
def scheduler():
    made = []

    def make(**kw):
        batches = []
        s = BatchScheduler(BatchingOptions(**kw), on_batch=lambda key, size: batches.append(size))
        s.batches = batches
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def concurrently(fn, args):
    results = [None] * len(args)

    def call(i):
        try:
            results[i] = fn(args[i])
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_requests_share_a_graph_call_and_get_their_own_rows(scheduler):
    s, graph = scheduler(max_batch_size=8, batch_timeout_micros=1_000_000, num_batch_threads=1), Graph()
    inputs = [np.array([float(i)] * (1 + i % 2), np.float32) for i in range(8)]
    results = concurrently(lambda x: s.run(("m", 1, "sig"), graph, {"x": x}), inputs)
    for x, out in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2)
    assert sum(graph.calls) == sum(len(x) for x in inputs) == 12
    assert len(graph.calls) < 8 and max(graph.calls) <= 8  # merged, never past the limit
    assert sorted(s.batches) == sorted(graph.calls)


def test_a_lone_request_waits_at_most_the_batch_timeout(scheduler):
    s, graph = scheduler(max_batch_size=64, batch_timeout_micros=50_000), Graph()
    start = time.perf_counter()
    out = s.run(("m", 1, "sig"), graph, {"x": np.ones(3, np.float32)})
    waited = time.perf_counter() - start
    # It runs alone once the 50 ms timeout passes: not before, and not long after.
    assert out["n"].tolist() == [3, 3, 3] and 0.045 <= waited < 0.5, waited


def test_a_request_larger_than_max_batch_size_is_refused_or_split(scheduler):
    s = scheduler(max_batch_size=8)
    with pytest.raises(InvalidArgument, match="Task size 10 is larger than maximum input batch "
                                              "size 8"):
        s.run(("m", 1, "sig"), Graph(), {"x": np.ones(10, np.float32)})
    split, graph = scheduler(max_batch_size=8, enable_large_batch_splitting=True,
                             max_execution_batch_size=4), Graph()
    x = np.arange(10, dtype=np.float32)
    out = split.run(("m", 1, "sig"), graph, {"x": x})
    np.testing.assert_array_equal(out["y"], x * 2)
    assert max(graph.calls) <= 4 and sum(graph.calls) == 10


def test_a_full_queue_answers_unavailable(scheduler):
    gate = threading.Event()
    s, graph = scheduler(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1), Graph(gate)
    first = threading.Thread(target=s.run, args=(("m", 1, "sig"), graph, {"x": np.ones(1)}))
    first.start()
    deadline = time.monotonic() + 10
    while s._queues and s._queues[("m", 1, "sig")].batches and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker has taken the first batch and blocks in the graph
    second = threading.Thread(target=s.run, args=(("m", 1, "sig"), graph, {"x": np.ones(1)}))
    second.start()
    time.sleep(0.1)
    with pytest.raises(Unavailable, match="queue to which this task was submitted is full"):
        s.run(("m", 1, "sig"), graph, {"x": np.ones(1)})
    gate.set()
    first.join(10)
    second.join(10)
    assert graph.calls == [1, 1]


def test_a_bad_request_fails_alone_not_its_batch(scheduler):
    s, graph = scheduler(max_batch_size=4, batch_timeout_micros=2_000_000, num_batch_threads=1), Graph()
    inputs = [np.array([v], np.float32) for v in (1.0, -1.0, 2.0, 3.0)]
    results = concurrently(lambda x: s.run(("m", 1, "sig"), graph, {"x": x}), inputs)
    assert isinstance(results[1], InvalidArgument) and "batch of 1" in str(results[1])
    assert [r["y"][0] for i, r in enumerate(results) if i != 1] == [2.0, 4.0, 6.0]
    assert graph.calls[0] == 4  # tried together first


def test_allowed_batch_sizes_pad_and_the_padding_is_dropped(scheduler):
    s, graph = scheduler(max_batch_size=8, allowed_batch_sizes=(4, 8)), Graph()
    out = s.run(("m", 1, "sig"), graph, {"x": np.array([5.0, 6.0, 7.0], np.float32)})
    assert graph.calls == [4]
    assert out["y"].tolist() == [10.0, 12.0, 14.0] and out["n"].tolist() == [4, 4, 4]


def test_requests_of_different_trailing_shapes_are_never_merged(scheduler):
    s, graph = scheduler(max_batch_size=8, batch_timeout_micros=200_000), Graph()
    inputs = [np.ones((1, 2), np.float32), np.ones((1, 3), np.float32)] * 2
    results = concurrently(lambda x: s.run(("m", 1, "sig"), graph, {"x": x}), inputs)
    for x, out in zip(inputs, results, strict=True):
        assert out["y"].shape == x.shape
    assert sum(graph.calls) == 4


def test_inputs_without_a_shared_batch_dimension_are_named(scheduler):
    s = scheduler()
    with pytest.raises(InvalidArgument, match="same size in dimension 0"):
        s.run(("m", 1, "sig"), Graph(), {"x": np.ones(2), "z": np.ones(3)})


def test_batching_parameters_are_checked_as_tf_serving_checks_them():
    opts = parse_batching_parameters("max_batch_size { value: 32 }\n"
                                     "batch_timeout_micros { value: 1000 }\n"
                                     "allowed_batch_sizes: 8 allowed_batch_sizes: 32\n"
                                     "pad_variable_length_inputs: true\n")
    assert (opts.max_batch_size, opts.batch_timeout_micros, opts.allowed_batch_sizes) == \
        (32, 1000, (8, 32))
    assert opts.max_enqueued_batches == 10  # TF Serving's default where the file is silent
    for text, message in [
        ("max_batch_size { value: 0 }", "max_batch_size must be >= 1"),
        ("max_batch_size { value: 16 } allowed_batch_sizes: 8", "must equal max_batch_size"),
        ("allowed_batch_sizes: 8 allowed_batch_sizes: 4", "increasing"),
        ("max_batch_size: 4", "max_batch_size"),  # a wrapper, not a scalar, as in TF Serving
    ]:
        with pytest.raises(BatchingConfigError, match=message):
            parse_batching_parameters(text)
    assert issubclass(BatchingConfigError, ConfigFileError)


def test_the_server_batches_concurrent_grpc_requests(model_base, start_server, tmp_path):
    """12 concurrent requests of 2 examples, max_batch_size 8 and a timeout far longer than
    the test: batches close only when full, so the server must make exactly 3 graph calls
    of 8 examples (4 requests each), and every request gets its own rows back."""
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000000 }\n"
                      "num_batch_threads { value: 1 }\n")
    server = start_server(model_name="scorer", model_base_path=str(model_base),
                          enable_batching=True, batching_parameters_file=str(params),
                          enable_model_warmup=False)  # lone warmup requests would wait 20 s
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    local = tf.saved_model.load(str(model_base / "1")).signatures["serving_default"]
    xs = [[0.1 * i, -0.2 * i - 0.05] for i in range(12)]

    def predict(batch):
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(x) for x in batch]))
        return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["probabilities"])

    results = concurrently(predict, xs)
    for batch, got in zip(xs, results, strict=True):
        assert not isinstance(got, Exception), got
        want = local(examples=tf.constant([example(x) for x in batch]))["probabilities"].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6)
    labels = {"model": "scorer", "version": "1"}
    sample = server.metrics.registry.get_sample_value
    histogram = {bound: sample("tandem_serving_batch_size_bucket", {**labels, "le": bound})
                 for bound in ("4.0", "8.0")}
    assert sample("tandem_serving_batch_size_count", labels) == 3  # graph calls
    assert sample("tandem_serving_batch_size_sum", labels) == 24  # every example batched
    assert histogram == {"4.0": 0, "8.0": 3}  # no batch of 4 or fewer: all of them full
