"""`tandem loop` (what `make run` runs): the whole product on embedded defaults, one command.

    1. generate data, train and push v1, label it stable
    2. start the model server and the gateway (127.0.0.1, free ports)
    3. send traffic, then traffic with drift; monitoring names the drifted feature
    4. labels arrive; retrain from the request log: v2 is pushed and labelled canary
    5. v2 gets live mirrored traffic; a shadow replay runs over the log
    6. the gate promotes v2 to stable, or rejects it (canary rolled back)
    7. a rollback, with requests flowing

Every server it starts is stopped at the end, on a failing step, and on Ctrl-C. Everything
lives under one work directory, which a new run starts afresh, so a second run needs no
cleanup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TextIO

MODEL = "listening"


class LoopError(RuntimeError):
    """A step failed: the message names it."""


@dataclasses.dataclass
class Step:
    name: str
    seconds: float = 0.0
    result: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """Child processes (model server, gateway), stopped however the loop ends."""

    def __init__(self, logs_dir: str):
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs_dir = logs_dir

    def start(self, name: str, args: list[str], port: int, timeout: float = 120.0) -> None:
        log = open(os.path.join(self.logs_dir, f"{name}.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args],
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # Ctrl-C reaches us; we stop them
        self.procs.append((name, proc))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LoopError(f"{name} exited with status {proc.returncode}; see "
                                f"{os.path.join(self.logs_dir, name + '.log')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.2)
        raise LoopError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")

    def stop(self, only: str | None = None) -> None:
        """Stop every server (or the one named `only`): SIGTERM, then SIGKILL after 15 s."""
        for name, proc in reversed(list(self.procs)):
            if only is not None and name != only:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            self.procs.remove((name, proc))


def _latest_version(serving_dir: str) -> int:
    base = os.path.join(serving_dir, MODEL)
    versions = sorted(int(v) for v in os.listdir(base) if v.isdigit()) if os.path.isdir(base) \
        else []
    if not versions:
        raise LoopError(f"no pushed version under {base}")
    return versions[-1]


def run_loop(work: str = "outputs/loop", rows: int = 12000, out: TextIO = sys.stdout,
             verbose: bool = False) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run

    work = os.path.abspath(work)
    if os.path.exists(work):
        shutil.rmtree(work)  # a fresh run: nothing carried over from the last one
    for sub in ("data", "requests", "drift", "server", "reports"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    steps: list[Step] = []
    reports: dict[str, str] = {}
    servers = Servers(os.path.join(work, "server"))
    started = time.monotonic()

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    @contextlib.contextmanager
    def step(name: str):
        s = Step(name)
        steps.append(s)
        say(f"\n== {len(steps)}. {name}")
        t = time.monotonic()
        try:
            yield s
        finally:
            s.seconds = time.monotonic() - t
            say(f"   ({s.seconds:.1f}s) {s.result}")

    overrides = [f"data.location={work}/data", f"output_dir={work}/pipeline"]
    config = load_config("listening", overrides)
    models_config = os.path.join(work, "models.config")
    logs_dir = os.path.join(work, "request_logs")
    labels_file = os.path.join(work, "labels.csv")
    grpc_port, rest_port, gw_port, gw_rest = free_port(), free_port(), free_port(), free_port()
    server = f"127.0.0.1:{grpc_port}"
    gateway = f"127.0.0.1:{gw_port}"
    status = 0

    def terminated(signum, frame):  # SIGTERM too stops the servers, as Ctrl-C does
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, terminated)
    try:
        with step("generate data, train and push v1 (stable)") as s:
            from components.datasets import listening

            listening.generate(os.path.join(work, "data"), rows, seed=0, span=1)
            result = run(config, out=out, verbose=verbose)
            if result.exit_code != 0 or not result.pushed:
                raise LoopError("training v1 did not push a model")
            v1 = _latest_version(config.serving_dir)
            with open(models_config, "w") as f:
                f.write(f'model_config_list {{ config {{ name: "{MODEL}" base_path: '
                        f'"{os.path.join(config.serving_dir, MODEL)}" model_platform: '
                        f'"tensorflow" model_version_policy {{ specific {{ versions: {v1} }} }} '
                        f'version_labels {{ key: "stable" value: {v1} }} }} }}\n')
            reports["statistics (v1's training data)"] = result.report
            s.result = f"v1 = version {v1}, labelled stable"

        with step("start the model server and the gateway") as s:
            servers.start("model-server", [
                "serve", "models", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                f"--model_config_file={models_config}",
                "--allow_version_labels_for_unavailable_models"], grpc_port)
            gateway_yaml = os.path.join(work, "gateway.yaml")
            _write_gateway_config(gateway_yaml, server, work, logs_dir, shadow=False)
            servers.start("gateway", ["serve", "gateway", "--config", gateway_yaml,
                                      "--port", str(gw_port),
                                      f"--rest_api_port={gw_rest}"], gw_port)
            s.result = f"model server {server}, gateway {gateway} (logs to {logs_dir})"

        with step("send traffic, then traffic with drift; monitor it") as s:
            from components.datasets import listening
            from components.monitor.job import run_monitor
            from serving.traffic import send

            start_time = time.time()
            # Requests come from the users and tracks of v1's data: the tables the gateway
            # joins them with (work/data/features.sqlite).
            listening.generate(os.path.join(work, "requests"), 8000, seed=0, span=2,
                               requests=True, labels="csv", label_delay_s=30, rate=800,
                               start_time=start_time, source_rows=rows)
            # Requests from night owls: hour_of_day moves into 0-5, and their skips follow
            # the same rule (the generator draws labels from the drifted features).
            listening.generate(os.path.join(work, "drift"), 2400, seed=0, span=3,
                               requests=True, labels="csv", label_delay_s=30, rate=800,
                               start_time=start_time + 10, drift=frozenset(["night_owls"]),
                               source_rows=rows)
            clean = send(gateway, os.path.join(work, "requests", "span-2", "*.tfrecord.gz"),
                         MODEL, rate=0, batch=4, progress=lambda line: say("   " + line))
            drifted = send(gateway, os.path.join(work, "drift", "span-3", "*.tfrecord.gz"),
                           MODEL, rate=0, batch=4, progress=lambda line: say("   " + line))
            say(f"   sent {clean.sent:,} clean and {drifted.sent:,} drifted requests "
                f"(night_owls: hour_of_day moves into 0-5); errors: "
                f"{dict(clean.errors) or 'none'}, {dict(drifted.errors) or 'none'}")
            summary = run_monitor(logs_dir, config, os.path.join(work, "monitor"),
                                  window_records=500)
            reports["monitoring"] = summary["report"]
            s.result = (f"drift found in {', '.join(summary['drift_features']) or 'nothing'}"
                        f"; skew in {', '.join(summary['skew_features']) or 'nothing'}")

        with step("labels arrive; retrain from the request log; v2 is canary") as s:
            with open(labels_file, "w") as f:
                f.write("request_id,label,timestamp\n")
                for part in (("requests", 2), ("drift", 3)):
                    path = os.path.join(work, part[0], f"span-{part[1]}", "labels.csv")
                    with open(path) as g:
                        next(g)
                        shutil.copyfileobj(g, f)
            retrain = load_config("listening", overrides + [
                "data.format=request_log", f"data.location={logs_dir}",
                f"data.labels={labels_file}"])
            result = run(retrain, out=out, verbose=verbose)
            v2 = _latest_version(config.serving_dir)
            if result.exit_code != 0 or v2 == v1:
                raise LoopError("retraining from the log did not push a new model (the "
                                "Evaluator's verdict is above)")
            reports["statistics (v2's training data: the log)"] = result.report
            from serving.promotion import promote

            for line in promote(models_config, server, MODEL, v2, "canary"):
                say(f"   {line}")
            s.result = f"v2 = version {v2}, labelled canary"

        with step("mirror live traffic to v2; shadow replay over the log") as s:
            from components.datasets import listening
            from components.shadow.replay import load_replay_config, run_replay, summary

            servers.stop("gateway")
            _write_gateway_config(gateway_yaml, server, work, logs_dir, shadow=True)
            servers.start("gateway", ["serve", "gateway", "--config", gateway_yaml,
                                      "--port", str(gw_port),
                                      f"--rest_api_port={gw_rest}"], gw_port)
            # Requests not sent before (span 4): step 3's again would log their ids twice.
            listening.generate(os.path.join(work, "mirror"), 2000, seed=0, span=4,
                               requests=True, source_rows=rows)
            mirrored = send(gateway, os.path.join(work, "mirror", "span-4", "*.tfrecord.gz"),
                            MODEL, rate=0, batch=4, progress=lambda line: say("   " + line))
            say(f"   {mirrored.sent:,} requests answered by stable v1 and mirrored to canary "
                "v2")
            # What each version and each feature source cost, for `tandem score` (Monitoring 6,
            # Data 3): both servers' Prometheus metrics, as scraped now.
            for name, port in (("model-server", rest_port), ("gateway", gw_rest)):
                snapshot_metrics(f"http://127.0.0.1:{port}/monitoring/prometheus/metrics",
                                 os.path.join(work, "server", f"{name}.metrics.prom"))
            replay_config = load_replay_config(None, [
                "thresholds.max_flip_rate=0.10", "thresholds.max_p99_abs_delta=0.35",
                "thresholds.max_quality_drop=0.02", "slices=[[device]]"])
            report = run_replay(logs_dir, os.path.join(config.serving_dir, MODEL, str(v1)),
                                os.path.join(config.serving_dir, MODEL, str(v2)),
                                os.path.join(work, "replay"), replay_config,
                                labels=labels_file)
            for line in summary(report):
                say(f"   {line}")
            reports["shadow replay"] = os.path.join(work, "replay", "report.html")
            passed = report["verdict"]["passed"]
            s.result = "replay PASSED" if passed else "replay FAILED"

        with step("the gate: promote v2, or reject it") as s:
            from serving.promotion import promote, rollback

            if passed:
                for line in promote(models_config, server, MODEL, v2, "stable"):
                    say(f"   {line}")
                s.result = f"v2 (version {v2}) promoted to stable"
            else:
                failed = [c["check"] for c in report["verdict"]["checks"] if not c["passed"]]
                s.result = f"v2 rejected by the replay gate ({'; '.join(failed)})"

        with step("a rollback, with requests flowing") as s:
            flowing = {}

            def traffic() -> None:
                flowing["result"] = send(
                    gateway, os.path.join(work, "requests", "span-2", "*.tfrecord.gz"),
                    MODEL, rate=200, batch=1, limit=1200)

            thread = threading.Thread(target=traffic)
            thread.start()
            time.sleep(1.5)
            try:
                # Promoted: stable goes back to v1. Rejected: canary goes back to stable's v1,
                # which unloads v2.
                moved = rollback(models_config, server, MODEL) if passed else \
                    rollback(models_config, server, MODEL, label="canary")
            finally:
                thread.join()
            for line in moved:
                say(f"   {line}")
            sent = flowing.get("result")
            errors = sum(sent.errors.values()) if sent else -1
            what = "stable back to v1" if passed else "canary back to v1, v2 unloaded"
            s.result = (f"{what}; {sent.sent:,} requests sent meanwhile, {errors} failed"
                        if sent else "no traffic result")
            if errors:
                raise LoopError(f"{errors} requests failed during the rollback")
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the servers")
        status = 130
    except LoopError as e:
        say(f"\nFAILED: {e}")
        status = 1
    finally:
        servers.stop()
        signal.signal(signal.SIGTERM, previous_handler)
    total = time.monotonic() - started
    say("\n== summary")
    for i, s in enumerate(steps, 1):
        say(f"  {i}. {s.name:<58} {s.seconds:7.1f}s  {s.result}")
    say(f"  total {total:.1f}s")
    for name, path in reports.items():
        if os.path.exists(path):
            say(f"  report: {name:<40} {path}")
    say(f"  work directory: {work} (servers stopped)")
    return status


def snapshot_metrics(url: str, path: str) -> None:
    """Save a server's Prometheus exposition (the evidence `tandem score` reads)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    with open(path + ".tmp", "wb") as f:
        f.write(body)
    os.replace(path + ".tmp", path)


def _write_gateway_config(path: str, server: str, work: str, logs_dir: str,
                          shadow: bool) -> None:
    import yaml

    from pipeline.config import CONFIGS_DIR

    root = os.path.dirname(os.path.dirname(CONFIGS_DIR))
    with open(os.path.join(root, "deploy", "gateway", "listening.yaml")) as f:
        config = yaml.safe_load(f)
    config["primary"]["address"] = server
    config["primary"]["version_label"] = "stable"
    config["schema"] = os.path.join(root, "schemas", "listening", "schema.pbtxt")
    config["decorate"]["sqlite"] = os.path.join(work, "data", "features.sqlite")
    config["log"]["dir"] = logs_dir
    config["shadow"].update({"address": server if shadow else "",
                             "model_name": MODEL if shadow else "",
                             "version_label": "canary" if shadow else ""})
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
