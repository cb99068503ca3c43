"""Benchmark: shadow replay throughput (examples through both models per second) against
three references, all in one run on the same logged requests:

(a) naive: a loop sending each logged request to the model server over gRPC, one at a time,
    to A and then to B (measured on the first --naive requests);
(b) the stock path: tfx_bsl's RunInferencePerModel on DirectRunner with default settings,
    over the same examples, both models (measured on the first --stock examples);
(c) the floor: both models' raw batched in-process inference on the same examples.

And the replay with candidate features (`--candidate-features`): the same logs re-decorated
from a feature-source snapshot whose users' age is in months, every divergent request
attributed column by column; its cost against the model replay's (goal: at most 1.5x). It
runs as the loop runs it (and SourceValidator when its candidate is the serving model), with A
as both models (the snapshot alone changes), and once more with a B that differs (snapshot and
model both change: B also answers on the logged examples, for the model's share of the
divergence), reported beside it. The months snapshot moves every request's score, so the
like-for-like model replay is one whose candidate also moves every score (B shifted: A with
every probability moved by 0.3 in log-odds, at A's inference cost): its report has the same
divergence to summarise and draw. The model replay with B a copy of A (nothing diverges) is
printed too. `--features-only` measures just these.

The log holds one request per example, written with the shared writer with model A's own
answers. The models are the listening model the pipeline trains (A), a copy of it (B) and
A shifted (above).

    python bench/replay.py [--model_base_path DIR] [--requests 100000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
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
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def served_examples(work: str, n: int) -> list[bytes]:
    """The generated examples as the gateway served them: the training bytes without the
    label's fragment, which the generator appends last."""
    from tandem.pipeline.datasets import listening

    data = os.path.join(work, "data")
    listening.generate(data, n, seed=9)
    out = []
    for shard in sorted(os.listdir(os.path.join(data, "span-1"))):
        if not shard.endswith(".tfrecord.gz"):
            continue
        for record in tf.data.TFRecordDataset(os.path.join(data, "span-1", shard),
                                              compression_type="GZIP"):
            data_bytes = record.numpy()
            e = tf.train.Example.FromString(data_bytes)
            suffix = listening.label_fragment(e.features.feature[listening.LABEL]
                                              .int64_list.value[0])
            out.append(data_bytes[:-len(suffix)])
    return out[:n]


def features_replay(work: str, logs: str, dir_a: str, dir_b: str) -> tuple[float, dict]:
    """Seconds of the replay with candidate features (users' age in months) over `logs`."""
    import sqlite3

    import yaml

    from tandem.pipeline.feature_checks import run_features_replay

    data = os.path.join(work, "data")
    candidate = os.path.join(work, "months.sqlite")
    shutil.copy(os.path.join(data, "features.sqlite"), candidate)
    con = sqlite3.connect(candidate)
    with con:
        con.execute("UPDATE users SET age = age * 12")
    con.close()
    with open(os.path.join(ROOT, "deploy", "gateway", "listening.yaml")) as f:
        config = yaml.safe_load(f)
    config["schema"] = os.path.join(ROOT, "schemas", "listening", "schema.pbtxt")
    config["decorate"]["sqlite"] = os.path.join(data, "features.sqlite")
    gateway = os.path.join(work, "gateway.yaml")
    with open(gateway, "w") as f:
        yaml.safe_dump(config, f)
    start = time.perf_counter()
    report = run_features_replay(logs, dir_a, dir_b, os.path.join(work, "out-features"),
                                 gateway, candidate)
    return time.perf_counter() - start, report


def shifted_model(dir_a: str, dir_b: str, shift: float = 0.3) -> None:
    """Model A with every probability moved by `shift` in log-odds, saved to `dir_b`: a
    candidate that differs from A on every request, at A's inference cost plus a few
    element-wise ops."""
    a = tf.saved_model.load(dir_a)
    serve = a.signatures["serving_default"]

    class Shifted(tf.Module):
        def __init__(self):
            super().__init__()
            self.a = a  # tracked: A's variables and assets are saved with it

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            out = dict(serve(examples=examples))  # any other output passes through
            p = tf.clip_by_value(out["probabilities"], 1e-7, 1 - 1e-7)
            q = tf.sigmoid(tf.math.log(p / (1 - p)) + shift)
            out["probabilities"] = q
            if "scores" in out:
                out["scores"] = tf.stack([1 - q, q], axis=1)
            return out

    module = Shifted()
    tf.saved_model.save(module, dir_b, signatures={
        "serving_default": module.serve.get_concrete_function()})


def write_log(path: str, model_dir: str, version: int, examples: list[bytes]) -> None:
    """One record per request, with A's answers, through the shared writer."""
    from tandem.schemas.request_log import LogWriter, make_record

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    writer = LogWriter(path, fsync_interval_s=0)
    for start in range(0, len(examples), 1024):
        batch = examples[start:start + 1024]
        out = {k: v.numpy() for k, v in fn(examples=tf.constant(batch)).items()}
        for i, data in enumerate(batch):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
            response = predict_pb2.PredictResponse(
                model_spec=model_pb2.ModelSpec(name="listening"))
            response.model_spec.version.value = version
            for key, value in out.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value[i:i + 1]))
            writer.write(make_record(request=request, response=response, model_name="listening",
                                     model_version=version, signature_name="serving_default",
                                     request_id=f"r{start + i}", example_ids=[f"r{start + i}"]))
    writer.close()


def naive(examples: list[bytes], base_a: str, base_b: str) -> float:
    """Examples/s of one gRPC call per logged request to A, then to B."""
    servers = [bs.serve("listening", base) for base in (base_a, base_b)]
    try:
        stubs = [prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}")) for _, port, _ in servers]
        requests = []
        for data in examples:
            r = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
            r.inputs["examples"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
            requests.append(r)
        for r in requests[:20]:
            for s in stubs:
                s.Predict(r)
        start = time.perf_counter()
        for r in requests:
            for s in stubs:
                s.Predict(r, timeout=30)
        return len(requests) / (time.perf_counter() - start)
    finally:
        for proc, _, _ in servers:
            bs.stop(proc)


def stock(examples: list[bytes], dir_a: str, dir_b: str) -> float:
    """Examples/s of tfx_bsl's RunInferencePerModel on DirectRunner, default settings."""
    import apache_beam as beam
    from tfx_bsl.public.beam.run_inference import RunInferencePerModel
    from tfx_bsl.public.proto import model_spec_pb2

    specs = [model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=d, signature_name=["serving_default"])) for d in (dir_a, dir_b)]
    parsed = [tf.train.Example.FromString(e) for e in examples]
    start = time.perf_counter()
    with beam.Pipeline() as p:
        _ = (p | beam.Create(parsed) | RunInferencePerModel(specs)
             | beam.combiners.Count.Globally())
    return len(examples) / (time.perf_counter() - start)


def floor(examples: list[bytes], dir_a: str, dir_b: str, batch: int = 1024) -> float:
    """Examples/s of both models' batched in-process inference, nothing else."""
    fns = [tf.saved_model.load(d).signatures["serving_default"] for d in (dir_a, dir_b)]
    for fn in fns:
        fn(examples=tf.constant(examples[:batch]))
    start = time.perf_counter()
    for i in range(0, len(examples), batch):
        chunk = tf.constant(examples[i:i + batch])
        for fn in fns:
            fn(examples=chunk)
    return len(examples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default=None)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=2000)
    parser.add_argument("--stock", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved runs of the model and the features replay")
    parser.add_argument("--features-only", action="store_true",
                        help="only the model replay and the replay with candidate features")
    args = parser.parse_args()
    from tandem.pipeline.traffic_checks import run_replay

    with tempfile.TemporaryDirectory() as work:
        base_a = args.model_base_path or bs.trained_model(work)
        dir_a = bs.latest_version(base_a)
        version = int(os.path.basename(dir_a))
        base_b = os.path.join(work, "b")
        shutil.copytree(dir_a, os.path.join(base_b, str(version)))
        dir_b = os.path.join(base_b, str(version))
        dir_shifted = os.path.join(work, "shifted", str(version))
        shifted_model(dir_a, dir_shifted)
        print(f"generating {args.requests:,} examples and logging A's answers ...", flush=True)
        examples = served_examples(work, args.requests)
        logs = os.path.join(work, "logs")
        write_log(logs, dir_a, version, examples)

        # The model replays and the features replays, interleaved, each --rounds times; the
        # fastest run of each counts (a busy machine only ever slows a run).
        runs: dict[str, list[float]] = {"copy": [], "shifted": [], "features": [], "both": []}
        for round_ in range(args.rounds):
            for name, b, note in (("copy", dir_b, "B a copy of A"),
                                  ("shifted", dir_shifted, "B shifted")):
                print(f"round {round_ + 1}: replay (tandem shadow replay, DirectRunner "
                      f"in_memory), {note} ...", flush=True)
                start = time.perf_counter()
                out = run_replay(logs, dir_a, b, os.path.join(work, f"out-{name}{round_}"))
                runs[name].append(time.perf_counter() - start)
                if name == "copy":
                    report = out
                else:
                    shifted_moved = out["overall"]["abs_delta"]["p50"]["value"]
            print(f"round {round_ + 1}: replay with candidate features (users' age in "
                  "months), A as both models ...", flush=True)
            features_s, features = features_replay(work, logs, dir_a, dir_a)
            runs["features"].append(features_s)
            print(f"round {round_ + 1}: the same with B shifted: snapshot and model both "
                  "change ...", flush=True)
            runs["both"].append(features_replay(work, logs, dir_a, dir_shifted)[0])
        best = {name: min(times) for name, times in runs.items()}
        whole, shifted_s = best["copy"], best["shifted"]
        features_s, both_s = best["features"], best["both"]
        per_round = sorted(f / m for f, m in zip(runs["features"], runs["shifted"],
                                                  strict=True))
        per_round_copy = sorted(f / m for f, m in zip(runs["features"], runs["copy"],
                                                       strict=True))
        ours = report["input"]["replayed_examples"] / whole
        f = features["features"]
        print(f"\nover the same {len(examples):,} logged requests, fastest of {args.rounds}:")
        print(f"  model replay, B shifted (every score moves)      {shifted_s:6.1f}s   "
              f"(median |B - A| {shifted_moved:.4f})")
        print(f"  model replay, B a copy of A (nothing diverges)   {whole:6.1f}s")
        print(f"  replay with candidate features, A as both        {features_s:6.1f}s   "
              f"({f['divergent']:,} divergent, attributed to {', '.join(f['blamed'])})")
        print(f"  snapshot and model both change (B shifted)       {both_s:6.1f}s")
        print(f"candidate features against the model replay with the same divergence: "
              f"{features_s / shifted_s:.2f}x (goal <= 1.5x; each round's own ratio "
              f"{', '.join(f'{r:.2f}' for r in per_round)}, median "
              f"{per_round[len(per_round) // 2]:.2f}x); against B a copy of A "
              f"{features_s / whole:.2f}x (each round's own "
              f"{', '.join(f'{r:.2f}' for r in per_round_copy)}); snapshot and model both "
              f"changing {both_s / shifted_s:.2f}x")
        print("every run (s): " + "; ".join(
            f"{name} {', '.join(f'{t:.1f}' for t in times)}" for name, times in runs.items()))
        if args.features_only:
            return
        # The same job on 1,000 requests: its time is nearly all start-up (Beam, two model
        # loads), so the difference gives the rate once running. Each job runs twice,
        # interleaved, and the faster run counts (a busy machine only ever slows a run).
        small = os.path.join(work, "small-logs")
        write_log(small, dir_a, version, examples[:1000])
        wholes, startups = [], []
        for round_ in range(2):
            start = time.perf_counter()
            report = run_replay(logs, dir_a, dir_b, os.path.join(work, f"out-{round_}"))
            wholes.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_replay(small, dir_a, dir_b, os.path.join(work, f"out-small-{round_}"))
            startups.append(time.perf_counter() - start)
        whole, startup = min(wholes), min(startups)
        ours = report["input"]["replayed_examples"] / whole
        steady = (len(examples) - 1000) / (whole - startup) if whole > startup else None
        print(f"floor: batched in-process inference of both models on {len(examples):,} ...",
              flush=True)
        floor_rate = floor(examples, dir_a, dir_b)
        print(f"stock: RunInferencePerModel on {args.stock:,} ...", flush=True)
        stock_rate = stock(examples[:args.stock], dir_a, dir_b)
        print(f"naive: one gRPC call per request and model, {args.naive:,} requests ...",
              flush=True)
        naive_rate = naive(examples[:args.naive], base_a, base_b)

    print()
    print(f"shadow replay of {len(examples):,} logged requests through two models "
          "(examples/s, both models per example)")
    print(f"{'tandem shadow replay (whole job)':40}{ours:>12,.0f}")
    print(f"{'(a) naive gRPC loop':40}{naive_rate:>12,.0f}   ours {ours / naive_rate:.0f}x")
    print(f"{'(b) RunInferencePerModel, default':40}{stock_rate:>12,.0f}   ours "
          f"{ours / stock_rate:.1f}x")
    print(f"{'(c) floor: batched in-process inference':40}{floor_rate:>12,.0f}   ours "
          f"{ours / floor_rate:.2f}x")
    if steady is None:
        print(f"the whole job took {whole:.1f}s and the 1,000-request job {startup:.1f}s: the "
              "machine was too busy to tell start-up from steady state; run again")
    else:
        print(f"the whole job took {whole:.1f}s, of which about {startup:.1f}s is start-up (the "
              f"same job on 1,000 requests); once running it replays {steady:,.0f} examples/s "
              f"({steady / floor_rate:.2f}x the floor)")


if __name__ == "__main__":
    main()
