"""Benchmark: what the gateway costs. A client calls the model server directly (sending the
decorated examples itself), against the same client calling the gateway (sending request
examples: keys and request-time features) with every stage on: decorate from the SQLite
feature source, validate against the curated schema, log every request, predict. Batch 1 and
batch 64, latency (p50/p99, one client) and throughput (4 client threads), each measured in
rounds that interleave the two paths so a slow spell of a shared 2-core machine hits both.
The time each stage adds is read from the gateway's own stage histograms, and a py-spy
profile of the gateway process under batch-64 load says where its CPU goes, by stage.

Then scaling: batch-64 throughput with the gateway's --workers N (1 and 2 by default) against
the direct path, side by side in the same rounds.

Then the mirror: model A's latency through the gateway (batch 1, a fixed request rate below
saturation, so a latency change is the mirror's doing and not queueing) with no
shadow, with a healthy shadow B, with B ten times slower than A (a delaying proxy in front of
it), and with B down (nothing listening). B is a near-free model in its own server process:
on two shared cores B's real inference would slow A by taking CPU, which in production runs
on B's own nodes; what is measured is what mirroring costs the gateway and A.

    python bench/gateway.py [--model_base_path DIR] [--rounds 5] [--requests 300]
                            [--workers 1,2] [--no-mirror] [--baseline-pythonpath DIR]

--baseline-pythonpath runs a second gateway from an older tandem (a directory whose `tandem`
package maps an older checkout) in the same interleaved rounds: a before/after measured side by
side on a busy machine.

Without --model_base_path it trains one (20k generated listening rows through the pipeline).
Model server and gateway run as `tandem serve ...` processes on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_spec = importlib.util.spec_from_file_location("bench_serving",
                                               os.path.join(ROOT, "bench", "serving.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

STAGES = ("decorate", "validate", "predict", "log", "mirror", "total")


def data_and_requests(work: str, n: int) -> tuple[str, list[bytes], list[bytes]]:
    """(data dir, decorated examples, the request part of each): generated listening rows."""
    from tandem.pipeline.datasets import listening

    data = os.path.join(work, "gw-data")
    listening.generate(data, max(n, 1000), seed=5)
    path = os.path.join(data, "span-1", "data-00000-of-00001.tfrecord.gz")
    decorated, requests = [], []
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP").take(n):
        full = tf.train.Example.FromString(record.numpy())
        del full.features.feature[listening.LABEL]
        decorated.append(full.SerializeToString(deterministic=True))
        request = tf.train.Example()
        for name in listening.REQUEST_FEATURES:
            request.features.feature[name].CopyFrom(full.features.feature[name])
        requests.append(request.SerializeToString(deterministic=True))
    return data, decorated, requests


def start_gateway(work: str, data: str, primary: int, *sets: str, workers: int = 1,
                  pythonpath: str = "") -> tuple[subprocess.Popen, int, int]:
    """A gateway process; `pythonpath`: run the tandem found there (a baseline checkout)."""
    with open(os.path.join(ROOT, "deploy", "gateway", "listening.yaml")) as f:
        config = yaml.safe_load(f)
    config["primary"]["address"] = f"127.0.0.1:{primary}"
    config["schema"] = os.path.join(ROOT, "schemas", "listening", "schema.pbtxt")
    config["decorate"]["sqlite"] = os.path.join(data, "features.sqlite")
    config["log"]["dir"] = tempfile.mkdtemp(prefix="logs-", dir=work)
    path = os.path.join(work, "gateway.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    port, rest = bs.free_port(), bs.free_port()
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(bs.TANDEM + ["serve", "gateway", "--gateway-config", path, "--port", str(port),
                                         "--rest_api_port", str(rest), *args,
                                         *(["--workers", str(workers)] if workers > 1 else [])],
                            stdout=subprocess.PIPE, text=True, cwd=pythonpath or ROOT,
                            stderr=open(os.path.join(work, "gateway.log"), "a"),
                            env={**os.environ, "PYTHONPATH": pythonpath} if pythonpath
                            else None)
    for line in proc.stdout:
        if line.startswith("gRPC on"):
            return proc, port, rest
    sys.exit(f"the gateway exited with status {proc.wait()}")


def caller(port: int, examples: list[bytes], batch: int):
    """A make_call for bs.threaded_load: each thread its own channel, cycling the examples."""
    def make():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}"))
        requests = []
        for i in range(0, min(len(examples), 64 * batch), batch):
            r = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
            chunk = (examples * 2)[i:i + batch]
            r.inputs["examples"].CopyFrom(tf.make_tensor_proto(chunk, dtype=tf.string))
            requests.append(r)
        state = {"i": 0}

        def call():
            state["i"] += 1
            stub.Predict(requests[state["i"] % len(requests)], timeout=30)
        return call
    return make


def metrics_lines(rest_port: int) -> list[str]:
    """The gateway's Prometheus exposition, its sample lines only."""
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
    conn.request("GET", "/monitoring/prometheus/metrics")
    text = conn.getresponse().read().decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def stage_means(rest_port: int) -> dict[str, tuple[float, float]]:
    """{stage: (sum seconds, count)} from the gateway's histograms."""
    out: dict[str, list[float]] = {s: [0.0, 0.0] for s in STAGES}
    for line in metrics_lines(rest_port):
        for kind, slot in (("_sum", 0), ("_count", 1)):
            prefix = f"tandem_gateway_stage_seconds{kind}{{stage=\""
            if line.startswith(prefix):
                stage = line[len(prefix):].split('"')[0]
                out[stage][slot] = float(line.split()[-1])
    return {s: (v[0], v[1]) for s, v in out.items()}


def compare(args, server_port: int, proxy_port: int, gw_port: int, gw_rest: int, decorated,
            requests, baseline_port: int = 0) -> None:
    print(f"\nclient -> model server (direct), against client -> a bare Python gRPC proxy that "
          f"forwards bytes (proxy: the transport hop alone), and client -> gateway (decorate, "
          f"validate, log, predict); {args.rounds} interleaved rounds")
    print(f"{'batch':>6} {'path':<10}{'p50 ms':>9}{'p99 ms':>9}{'examples/s':>13}")
    paths = ("direct", "proxy", "gateway") + (("baseline",) if baseline_port else ())
    for batch in (1, 64):
        makes = {"direct": caller(server_port, decorated, batch),
                 "proxy": caller(proxy_port, decorated, batch),
                 "gateway": caller(gw_port, requests, batch)}
        if baseline_port:  # the gateway of --baseline-pythonpath, in the same rounds
            makes["baseline"] = caller(baseline_port, requests, batch)
        calls = {name: make() for name, make in makes.items()}
        lat = {p: [] for p in paths}
        p50s = {p: [] for p in paths}
        tput = {p: [] for p in paths}
        before = stage_means(gw_rest)
        n = args.requests if batch == 1 else max(30, args.requests // 8)
        for _ in range(args.rounds):
            for name in paths:
                call, make = calls[name], makes[name]
                samples = bs.timed(call, n)
                lat[name] += samples
                p50s[name].append(bs.percentiles(samples)[0])
                tput[name].append(bs.throughput(make, batch, seconds=args.seconds))
        after = stage_means(gw_rest)
        result = {}
        for name in paths:
            p99 = bs.percentiles(lat[name])[1]
            result[name] = (float(np.median(p50s[name])), p99, float(np.median(tput[name])))
            p50, p99, t = result[name]
            print(f"{batch:>6} {name:<10}{p50:>9.2f}{p99:>9.2f}{t:>13,.0f}")
        added = result["gateway"][0] - result["direct"][0]
        hop = result["proxy"][0] - result["direct"][0]
        share = result["gateway"][2] / result["direct"][2]
        print(f"{batch:>6} gateway adds {added:.2f} ms at p50 ({hop:.2f} ms of it the bare "
              f"hop); throughput {100 * share:.0f}% of direct "
              f"(bare hop: {100 * result['proxy'][2] / result['direct'][2]:.0f}%)")
        if baseline_port:
            print(f"{batch:>6} baseline gateway adds "
                  f"{result['baseline'][0] - result['direct'][0]:.2f} ms at p50; throughput "
                  f"{100 * result['baseline'][2] / result['direct'][2]:.0f}% of direct")
        parts = []
        for stage in STAGES:
            s = after[stage][0] - before[stage][0]
            c = after[stage][1] - before[stage][1]
            if c:
                parts.append(f"{stage} {1e6 * s / c:,.0f}")
        print(f"{'':>6} mean µs per request by stage: {', '.join(parts)}")


# Where a batch-64 request's time goes in the gateway process, by stage: the function that
# names each stage, the first one found from the innermost frame outwards. A sampled stack that
# reaches none of them (gRPC's own server threads, the log's fsync thread) is "gRPC and other".
PROFILE_STAGES = (
    ("parse_examples", "parse request examples"),
    ("read", "read request examples at the wire"),
    ("_request_id", "request ids"),
    ("_own", "decorate: strip joined columns"),
    ("key_of", "decorate: key lookup"),
    ("key_of_entry", "decorate: key lookup"),
    ("_fragments", "decorate: cache / source"),
    ("_join", "decorate: concatenate"),
    ("decorate", "decorate: concatenate"),
    ("validate_batch", "validate"),
    ("validate_read", "validate"),
    ("_verdict", "validate: verdict, metrics"),
    ("make_record", "log: build record"),
    ("write", "log: frame, compress, write"),
    ("_log", "log: other"),
    ("__call__", "predict: model call"),
    ("_predict", "predict: serialize, parse"),
    ("submit", "mirror enqueue"),
    ("_handle", "request: other (replace tensor, metrics)"),
    ("_run", "request: other (replace tensor, metrics)"),
)


def profile_section(args, gw_pid: int, gw_port: int, requests: list[bytes]) -> None:
    """py-spy samples the gateway process (every thread that holds the CPU) while 4 client
    threads send batch-64 requests; the samples are summed by stage."""
    import shutil

    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        print("\n(no profile: py-spy is not installed)")
        return
    raw = os.path.join(tempfile.mkdtemp(), "gateway.raw")
    proc = subprocess.Popen([spy, "record", "--pid", str(gw_pid), "--format", "raw", "--output",
                             raw, "--rate", "250", "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attached
    bs.throughput(caller(gw_port, requests, 64), 64, seconds=args.profile_seconds)
    proc.send_signal(2)  # SIGINT: py-spy writes what it sampled
    proc.wait(timeout=60)
    totals: dict[str, int] = {}
    for line in open(raw):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        names = [frame.split(" (")[0] for frame in stack.split(";")]
        stage = "gRPC and other"
        if any(name == "_handle" for name in names):
            for name in reversed(names):
                found = next((s for f, s in PROFILE_STAGES if f == name), None)
                if found:
                    stage = found
                    break
        totals[stage] = totals.get(stage, 0) + int(count)
    total = sum(totals.values()) or 1
    print(f"\nprofile of the gateway process, batch 64, 4 client threads "
          f"({args.profile_seconds:g}s, py-spy samples holding the GIL: {total:,})")
    for stage, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<44}{100 * n / total:>6.1f}%")


def scaling_section(args, work: str, data: str, server_port: int, decorated,
                    requests) -> None:
    """Batch-64 throughput of the gateway with N worker processes against the direct path,
    every path in each round, with 8 client threads (a channel each, so the kernel spreads
    their connections over the workers)."""
    counts = [int(n) for n in args.workers.split(",")]
    gateways = {n: start_gateway(work, data, server_port, workers=n) for n in counts}
    makes = {"direct": caller(server_port, decorated, 64)}
    makes.update({f"gateway x{n}": caller(port, requests, 64)
                  for n, (_, port, _) in gateways.items()})
    tput: dict[str, list[float]] = {name: [] for name in makes}
    for make in makes.values():
        bs.throughput(make, 64, seconds=0.5, clients=8)  # connections up, caches warm
    for _ in range(args.rounds):
        for name, make in makes.items():
            tput[name].append(bs.throughput(make, 64, seconds=args.seconds, clients=8))
    for proc, _, _ in gateways.values():
        bs.stop(proc)
    direct = float(np.median(tput["direct"]))
    print(f"\nbatch 64, 8 client threads, the gateway with N worker processes on the same 2 "
          f"cores as the model server; {args.rounds} interleaved rounds")
    print(f"{'path':<14}{'examples/s':>13}{'vs direct':>11}")
    for name, samples in tput.items():
        t = float(np.median(samples))
        print(f"{name:<14}{t:>13,.0f}{100 * t / direct:>10.0f}%")


def paced_load(make_call, rate: float, seconds: float, clients: int = 2) -> list[float]:
    """Open-loop load: `clients` threads together sending `rate` requests per second on a
    fixed schedule (a late request is sent at once, not skipped): each call's latency."""
    import threading

    samples: list[list[float]] = [[] for _ in range(clients)]
    start = time.perf_counter() + 0.05

    def worker(i: int) -> None:
        call = make_call()
        n = 0
        while True:
            due = start + (n * clients + i) / rate
            if due - start > seconds:
                return
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            call()
            samples[i].append(time.perf_counter() - t)
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for s in samples for x in s]


def cheap_shadow(work: str) -> str:
    """Model B for the mirror section: its own server process with a model that does almost
    no work, so what is measured is what mirroring costs the gateway and A (the queue, the
    calls, the shadow records), not B's inference sharing A's two cores (in production B runs
    on its own nodes)."""
    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return {"probabilities": tf.zeros_like(tf.strings.length(examples), tf.float32)}

    base = os.path.join(work, "shadow")
    module = Constant()
    tf.saved_model.save(module, os.path.join(base, "1"),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    return base


def mirror_section(args, work: str, data: str, server_port: int, base: str,
                   requests: list[bytes]) -> None:
    # A's own latency, to make B ten times slower than it.
    probe, port, rest = start_gateway(work, data, server_port)
    p50_a = bs.percentiles(bs.timed(caller(port, requests, 1)(), 200))[0]
    bs.stop(probe)
    shadow, shadow_port, _ = bs.serve("listening", cheap_shadow(work))
    proxy, proxy_port = start_proxy(work, shadow_port, 10 * p50_a / 1000)
    down = bs.free_port()
    setups = [
        ("no mirroring", []),
        ("B healthy", [f"shadow.address=127.0.0.1:{shadow_port}", "shadow.model_name=listening"]),
        (f"B 10x slower ({10 * p50_a:.0f} ms)",
         [f"shadow.address=127.0.0.1:{proxy_port}", "shadow.model_name=listening",
          "shadow.timeout_s=5"]),
        ("B down", [f"shadow.address=127.0.0.1:{down}", "shadow.model_name=listening"]),
    ]
    print(f"\nmodel A through the gateway while mirroring to B (batch 1, {args.rate:g} requests/s "
          f"from 2 client threads, {args.rounds} interleaved rounds of {args.seconds:g}s; B is a "
          "near-free model in its own server process)")
    print(f"{'':<28}{'A p50 ms':>10}{'A p99 ms':>10}{'vs none':>9}{'mirrored':>10}{'dropped':>9}")
    results: dict[str, list] = {name: [] for name, _ in setups}
    for _ in range(args.rounds):  # interleaved: each round runs every setup
        for name, sets in setups:
            proc, port, rest = start_gateway(work, data, server_port, *sets)
            make = caller(port, requests, 1)
            bs.timed(make(), 50)
            samples = paced_load(make, args.rate, args.seconds)
            metrics = scrape(rest)
            bs.stop(proc)
            results[name].append((samples, metrics))
    baseline = None
    for name, _ in setups:
        samples = [x for s, _ in results[name] for x in s]
        mirrored = sum(m.get("tandem_gateway_mirror_requests_total", 0) for _, m in results[name])
        dropped = sum(m.get("tandem_gateway_mirror_dropped_total", 0) for _, m in results[name])
        p50, p99 = bs.percentiles(samples)
        baseline = baseline or p99
        print(f"{name:<28}{p50:>10.2f}{p99:>10.2f}{100 * (p99 / baseline - 1):>+8.0f}%"
              f"{mirrored:>10,.0f}{dropped:>9,.0f}")
    proxy.terminate()
    bs.stop(shadow)


def scrape(rest_port: int) -> dict[str, float]:
    """Each metric's total over its label sets."""
    totals: dict[str, float] = {}
    for line in metrics_lines(rest_port):
        name = line.split("{")[0].split(" ")[0]
        totals[name] = totals.get(name, 0.0) + float(line.split()[-1])
    return totals


PROXY = '''
# A Python gRPC proxy that forwards Predict calls as bytes, after `delay` seconds: with no
# delay, the cost of a Python hop alone; with one, a slow shadow.
import sys, time
from concurrent import futures
import grpc
port, target, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
forward = grpc.insecure_channel(target).unary_unary("/tensorflow.serving.PredictionService/Predict")
def predict(raw, context):
    if delay:
        time.sleep(delay)
    return forward(raw, timeout=30)
handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
    "Predict": grpc.unary_unary_rpc_method_handler(predict)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print("ready", flush=True)
server.wait_for_termination()
'''


def start_proxy(work: str, target_port: int, delay_s: float) -> tuple[subprocess.Popen, int]:
    script = os.path.join(work, "proxy.py")
    with open(script, "w") as f:
        f.write(PROXY)
    port = bs.free_port()
    proc = subprocess.Popen([sys.executable, script, str(port), f"127.0.0.1:{target_port}",
                             str(delay_s)], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--workers", default="1,2",
                        help="gateway worker counts to compare with direct (empty: skip)")
    parser.add_argument("--baseline-pythonpath", default="",
                        help="also run the tandem importable from this PYTHONPATH (an older "
                             "checkout) as a second gateway in the same rounds")
    parser.add_argument("--no-mirror", action="store_true", help="skip the mirror section")
    parser.add_argument("--profile-seconds", type=float, default=6.0,
                        help="how long py-spy samples the gateway under batch-64 load")
    parser.add_argument("--rate", type=float, default=150.0,
                        help="requests/s in the mirror section (an open-loop load, below "
                             "saturation, as a production gateway runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        base = args.model_base_path or bs.trained_model(work)
        data, decorated, requests = data_and_requests(work, 2000)
        server, server_port, _ = bs.serve("listening", base)
        gw, gw_port, gw_rest = start_gateway(work, data, server_port)
        baseline, baseline_port = None, 0
        if args.baseline_pythonpath:
            baseline, baseline_port, _ = start_gateway(work, data, server_port,
                                                       pythonpath=args.baseline_pythonpath)
        proxy, proxy_port = start_proxy(work, server_port, 0.0)
        try:
            compare(args, server_port, proxy_port, gw_port, gw_rest, decorated, requests,
                    baseline_port)
            if baseline is not None:
                bs.stop(baseline)
            profile_section(args, gw.pid, gw_port, requests)
            proxy.terminate()
            bs.stop(gw)
            if args.workers:
                scaling_section(args, work, data, server_port, decorated, requests)
            if not args.no_mirror:
                mirror_section(args, work, data, server_port, base, requests)
        finally:
            if gw.poll() is None:
                bs.stop(gw)
            bs.stop(server)


if __name__ == "__main__":
    main()
