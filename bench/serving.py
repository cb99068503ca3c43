"""Benchmark: the embedded model server over gRPC and REST against the server's own predict
path called in process (the floor), on the same examples, at batch 1 and batch 64.

The floor is `Servable.predict` on a PredictRequest: the direct signature call plus request
parsing and response encoding, everything the server does but the transport. The server runs
as its own process (`tandem serve models` on 127.0.0.1), the clients here: the generated
PredictionServiceStub and a persistent HTTP/1.1 connection. Latency and throughput are each
measured in several rounds that interleave the three paths, so a slow spell of a shared
2-core machine hits them alike; the table shows the median of the per-round p50s (and of the
per-round throughputs, 4 concurrent clients) and the p99 of all samples. The examples are the
model's own warmup requests (raw serialized tf.Examples from its eval split).

Then the transport alone: an empty gRPC echo service (bench/grpc_echo.py) in its own process,
its round trip and the server CPU it spends per call.

Last, server-side batching on the shipped deploy/batching.config: batch-1 gRPC requests from
4 load processes x 8 clients (bench/grpc_load.py) against the server as is and with
`--enable_batching` (examples per graph call read from the server's own metrics), then the
batch scheduler alone (16 threads calling the servable in this process, no gRPC). And the REST
answer's JSON text alone, for 64 rows of 1, 16 and 256 floats.

    python bench/serving.py [--model_base_path DIR] [--requests 400] [--rounds 5]
    python bench/serving.py --json_only   # the REST JSON encoding alone, no model

Without --model_base_path it trains one: 20k generated listening rows through the pipeline.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import timeit

# This file is named like tandem's `serving` package; drop its own directory from the path so
# `import serving` finds the package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

TANDEM = [sys.executable, "-m", "tandem.pipeline.cli"]
from tandem.schemas.ports import free_port  # noqa: E402


def trained_model(work: str) -> str:
    data, out = os.path.join(work, "data"), os.path.join(work, "out")
    subprocess.run(TANDEM + ["data", "generate", "--rows", "20000", "--out", data], check=True)
    subprocess.run(TANDEM + ["run", "--config", "listening", "--set", f"data.location={data}",
                             "--set", f"output_dir={out}"], check=True)
    return os.path.join(out, "serving", "listening")


def latest_version(base: str) -> str:
    versions = sorted(int(v) for v in os.listdir(base) if v.isdigit())
    if not versions:
        sys.exit(f"no version directories under {base}")
    return os.path.join(base, str(versions[-1]))


def warmup_examples(version_dir: str) -> list[bytes]:
    from tandem.schemas.contracts import warmup_path

    path = warmup_path(version_dir)
    examples: list[bytes] = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        examples += list(tf.make_ndarray(log.predict_log.request.inputs["examples"]))
    if not examples:
        sys.exit(f"{path} holds no examples")
    return examples


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(call, n: int) -> list[float]:
    for _ in range(min(20, n)):
        call()  # warm the path (connections, caches) before measuring
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def threaded_load(make_call, clients: int, seconds: float) -> tuple[list[float], float]:
    """`clients` threads, each calling its own `make_call()` back to back for `seconds`:
    (every call's latency in seconds, elapsed seconds)."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        call = make_call()
        while time.monotonic() < stop:
            start = time.perf_counter()
            call()
            samples[i].append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for s in samples for x in s], time.perf_counter() - start


def throughput(make_call, batch: int, seconds: float = 1.0, clients: int = 4) -> float:
    latencies, elapsed = threaded_load(make_call, clients, seconds)
    return len(latencies) * batch / elapsed


def serve(name: str, base: str, *flags: str) -> tuple[subprocess.Popen, int, int]:
    port, rest_port = free_port(), free_port()
    server = subprocess.Popen(
        TANDEM + ["serve", "models", f"--port={port}", f"--rest_api_port={rest_port}",
                  f"--model_name={name}", f"--model_base_path={base}", *flags],
        stdout=subprocess.PIPE, text=True,
    )
    for line in server.stdout:
        if line.startswith("gRPC on"):
            return server, port, rest_port
    sys.exit(f"the model server exited with status {server.wait()}")


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def examples_per_call(rest_port: int) -> float | None:
    """Mean examples per graph call, from the server's tandem_serving_batch_size histogram."""
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
    conn.request("GET", "/monitoring/prometheus/metrics")
    text = conn.getresponse().read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("tandem_serving_batch_size_sum{"):
            total += float(line.split()[-1])
        elif line.startswith("tandem_serving_batch_size_count{"):
            count += float(line.split()[-1])
    return total / count if count else None


def echo_cost(calls: int = 2000) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, server CPU ms per call) of an empty gRPC call to bench/grpc_echo.py."""
    import psutil

    server = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_echo.py")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline())
        call = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary("/tandem.bench.Echo/Echo")
        payload = b"x" * 64
        timed(lambda: call(payload, timeout=30), 200)
        cpu = psutil.Process(server.pid).cpu_times()
        samples = timed(lambda: call(payload, timeout=30), calls)
        after = psutil.Process(server.pid).cpu_times()
        used = (after.user + after.system) - (cpu.user + cpu.system)
        # timed() makes 20 warm-up calls before the measured ones.
        return (*percentiles(samples), used * 1000 / (calls + 20))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def under_load(port: int, request: predict_pb2.PredictRequest, processes: int, threads: int,
               seconds: float = 4.0) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, errors) with processes x threads clients calling back to
    back (bench/grpc_load.py)."""
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(request.SerializeToString())
    start_at = time.time() + 5  # after every load process has imported grpc and warmed up
    procs = [subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_load.py"),
         f"--port={port}", "--method=/tensorflow.serving.PredictionService/Predict",
         f"--payload={f.name}", f"--threads={threads}", f"--seconds={seconds}",
         f"--start_at={start_at}"], stdout=subprocess.PIPE, text=True,
    ) for _ in range(processes)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    os.unlink(f.name)
    latencies = [x for r in results for x in r["latencies"]]
    errors = sum(r["errors"] for r in results)
    return (len(latencies) / seconds, *percentiles(latencies), errors)


def batching_section(args, base: str, example: bytes) -> None:
    """Batch-1 requests from many concurrent clients: the server as is, and with
    --enable_batching on the shipped deploy/batching.config (what stock TF Serving reads)."""
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=args.model_name))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example]))
    params = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy",
                          "batching.config")
    rows = []
    for label, flags in (("unbatched", ()),
                         ("batching", ("--enable_batching", f"--batching_parameters_file={params}"))):
        server, port, rest_port = serve(args.model_name, base, *args.server_arg, *flags)
        try:
            load = under_load(port, request, args.load_processes, args.clients)
            per_call = examples_per_call(rest_port) if flags else 1.0
            rows.append((label, *load, per_call))
        finally:
            stop(server)
    print(f"\ngRPC batch 1, {args.load_processes} processes x {args.clients} concurrent clients "
          "for 4 s (batching: deploy/batching.config)")
    print(f"{'server':<11}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'examples/call':>15}")
    for label, rate, p50, p99, errors, per_call in rows:
        shown = f"{per_call:.1f}" if per_call is not None else "-"
        print(f"{label:<11}{rate:>12.0f}{p50:>10.2f}{p99:>10.2f}{errors:>8}{shown:>15}")
    print(f"throughput batching / unbatched: {rows[1][1] / rows[0][1]:.2f}x")


def batcher_in_process(args, version_dir: str, example: bytes, threads: int = 16) -> None:
    """The batch scheduler without gRPC in the way: `threads` callers of Servable.predict in
    this process, unbatched and batched on deploy/batching.config."""
    from tandem.serving.model_server.batching import BatchScheduler, read_batching_parameters
    from tandem.serving.model_server.servable import Servable

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=args.model_name))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example]))
    params = read_batching_parameters(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "batching.config"))
    rows = []
    for label in ("unbatched", "batching"):
        sizes: list[int] = []
        batcher = (BatchScheduler(params, on_batch=lambda key, size, sizes=sizes:
                                  sizes.append(size))
                   if label == "batching" else None)
        servable = Servable(args.model_name, 1, version_dir, batcher=batcher)
        flat, elapsed = threaded_load(
            lambda servable=servable: lambda: servable.predict(request), threads, 4.0)
        if batcher:
            batcher.stop()
        rows.append((label, len(flat) / elapsed, *percentiles(flat),
                     float(np.mean(sizes)) if sizes else 1.0))
    print(f"\nin process, batch 1, {threads} concurrent callers for 4 s (no gRPC)")
    print(f"{'server':<11}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'examples/call':>15}")
    for label, rate, p50, p99, mean in rows:
        print(f"{label:<11}{rate:>12.0f}{p50:>10.2f}{p99:>10.2f}{mean:>15.1f}")
    print(f"throughput batching / unbatched: {rows[1][1] / rows[0][1]:.2f}x")


def json_encoding_section(floats_per_row: tuple[int, ...] = (1, 16, 256)) -> None:
    """The REST answer's JSON text alone (tandem.serving.rest_codec.predict_json, TF Serving's float
    text) for a batch of 64 rows of N float32 outputs, random in [0, 1) like scores: the best
    of 5 repeats, per response and per float."""
    from tensorflow_serving.apis import predict_pb2

    from tandem.serving.rest_codec import predict_json
    from tandem.serving.tensor_codec import fill_tensor_proto

    rng = np.random.default_rng(0)
    print("\nREST JSON encoding of one Predict response of 64 rows (predict_json, no transport)")
    print(f"{'floats/row':>10}{'us/response':>13}{'ns/float':>10}")
    for n in floats_per_row:
        response = predict_pb2.PredictResponse()
        fill_tensor_proto(response.outputs["scores"], rng.random((64, n), dtype=np.float32))
        calls = max(10, 10000 // n)
        best = min(timeit.repeat(lambda response=response: predict_json(response, True),
                                 number=calls, repeat=5)) / calls
        print(f"{n:>10}{best * 1e6:>13.1f}{best * 1e9 / (64 * n):>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_base_path", help="serving dir of one model (version subdirs)")
    parser.add_argument("--model_name", default="listening")
    parser.add_argument("--requests", type=int, default=400,
                        help="sequential requests per path and round (batch 64: a quarter)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--server_arg", action="append", default=[], metavar="FLAG",
                        help="extra flag for `tandem serve models` (repeatable)")
    parser.add_argument("--clients", type=int, default=8,
                        help="client threads per load process in the batching comparison")
    parser.add_argument("--load_processes", type=int, default=4,
                        help="load processes in the batching comparison")
    parser.add_argument("--json_only", action="store_true",
                        help="only the REST JSON encoding section (needs no model)")
    args = parser.parse_args()
    if args.json_only:
        json_encoding_section()
        return
    base = args.model_base_path or trained_model(tempfile.mkdtemp(prefix="tandem-bench-serving-"))
    version_dir = latest_version(base)
    examples = warmup_examples(version_dir)
    batches = {1: examples[:1], 64: (examples * 64)[:64]}

    from tandem.serving.model_server.servable import Servable

    local = Servable(args.model_name, int(os.path.basename(version_dir)), version_dir)
    assert all(call.direct for call in local.calls.values()), "the direct call does not apply"
    server, port, rest_port = serve(args.model_name, base, *args.server_arg)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rows = []
        for batch, payload in batches.items():
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=args.model_name))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(payload))
            body = json.dumps({"instances": [{"b64": base64.b64encode(e).decode()}
                                             for e in payload]})

            def in_process(request=request):
                return lambda: local.predict(request)

            def grpc_call(request=request):
                return lambda: stub.Predict(request, timeout=30)

            def rest_call(body=body):
                conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)

                def call():
                    conn.request("POST", f"/v1/models/{args.model_name}:predict", body=body,
                                 headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    data = response.read()
                    if response.status != 200:
                        raise RuntimeError(data[:200])
                return call

            paths = (("in-process", in_process), ("gRPC", grpc_call), ("REST", rest_call))
            n = args.requests if batch == 1 else max(50, args.requests // 4)
            samples: dict[str, list[list[float]]] = {name: [] for name, _ in paths}
            rates: dict[str, list[float]] = {name: [] for name, _ in paths}
            for _ in range(args.rounds):
                for name, make in paths:
                    samples[name].append(timed(make(), n))
            for _ in range(args.rounds):
                for name, make in paths:
                    rates[name].append(throughput(make, batch))
            for name, _ in paths:
                p50 = float(np.median([percentiles(r)[0] for r in samples[name]]))
                p99 = percentiles([t for r in samples[name] for t in r])[1]
                rate = float(np.median(rates[name]))
                rows.append((name, batch, p50, p99, rate, samples[name]))
                print(f"  {name:<11} batch {batch:>2}: p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                      f"{rate:9.0f} examples/s", flush=True)
    finally:
        stop(server)

    print(f"\nmodel {args.model_name} version {os.path.basename(version_dir)}; "
          f"{len(examples)} distinct examples; latency: {args.rounds} interleaved rounds of "
          f"{args.requests} sequential requests (batch 64: {max(50, args.requests // 4)}); "
          f"throughput: median of {args.rounds} interleaved rounds of 4 clients for 1 s")
    print(f"{'path':<11}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'examples/s':>13}"
          f"{'p50 / in-process':>19}")
    floor = {b: p50 for name, b, p50, *_ in rows if name == "in-process"}
    for name, batch, p50, p99, rate, _ in rows:
        print(f"{name:<11}{batch:>6}{p50:>10.2f}{p99:>10.2f}{rate:>13.0f}{p50 / floor[batch]:>18.2f}x")
    per_round = {name: [percentiles(r)[0] for r in runs]
                 for name, b, *_, runs in rows if b == 1}
    met = sum(g <= 2 * f + 1.0 for g, f in zip(per_round["gRPC"], per_round["in-process"], strict=True))
    grpc_b1 = next(p50 for name, b, p50, *_ in rows if name == "gRPC" and b == 1)
    goal = 2 * floor[1] + 1.0
    print(f"\ngoal: gRPC batch-1 p50 <= 2 x in-process + 1 ms = {goal:.2f} ms; measured "
          f"{grpc_b1:.2f} ms -> {'met' if grpc_b1 <= goal else 'NOT met'} "
          f"(met in {met} of {args.rounds} rounds taken alone)")
    echo_p50, echo_p99, echo_cpu = echo_cost()
    print(f"\nempty gRPC echo call (bench/grpc_echo.py, its own process): p50 {echo_p50:.2f} ms "
          f"p99 {echo_p99:.2f} ms round trip, {echo_cpu:.2f} ms server CPU per call; gRPC "
          f"batch-1 p50 minus in-process p50: {grpc_b1 - floor[1]:.2f} ms")
    batching_section(args, base, examples[0])
    batcher_in_process(args, version_dir, examples[0])
    json_encoding_section()


if __name__ == "__main__":
    main()
