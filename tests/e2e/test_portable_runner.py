"""Every Beam job of the loop through Beam's portable Job API, with the SDK workers in their
own processes, as a Flink or Spark cluster runs them (tests/beam_cluster.py: Beam's job
service and an external worker pool on 127.0.0.1). A DoFn that cannot be pickled, or that
counts on state kept in the driver, fails here."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tandem.schemas.ports import free_port
from tests.conftest import ROOT, library_log_lines, tandem

pytestmark = pytest.mark.xdist_group("loop-portable")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def beam_cluster(tmp_path):
    """(job port, worker port, the cluster's log file): started, and stopped after the test."""
    job_port, worker_port = free_port(), free_port()
    log = tmp_path / "cluster.log"
    with open(log, "w") as f:
        cluster = subprocess.Popen(
            [sys.executable, "-m", "tests.beam_cluster", str(job_port), str(worker_port)],
            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (_listening(job_port) and _listening(worker_port)):
        assert cluster.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    yield job_port, worker_port, log
    os.killpg(cluster.pid, signal.SIGTERM)  # the pool's workers are in its process group
    cluster.wait(timeout=60)


@pytest.mark.timeout(2400)
def test_every_beam_job_of_the_loop_runs_on_a_portable_runner(tmp_path, beam_cluster):
    job_port, worker_port, log = beam_cluster
    extra = ["--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{job_port}",
             "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{worker_port}"]
    work = tmp_path / "loop"
    beam = f"beam.extra_args=[{', '.join(extra)}]"
    done = tandem("loop", "--out", str(work), "--rows", "4000", "--set", beam, timeout=2400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Beam PortableRunner (127.0.0.1:{job_port})" in done.stdout
    summary = done.stdout[done.stdout.index("== summary"):]
    steps = dict(re.findall(r"^  (\d)\. .*?\s+\d+\.\d+s  (.*)$", summary, re.M))
    assert "drift found in hour_of_day" in steps["3"], summary
    assert steps["5"] in ("replay PASSED", "replay FAILED"), summary
    assert "Traceback" not in done.stderr
    assert library_log_lines(done.stdout, done.stderr) == []

    # The TFX monitoring pipeline (TrafficMonitor) over the loop's log, on the same cluster:
    # the drift the loop sent is found there too.
    monitored = tandem("monitor", "pipeline", "--logs", str(work / "request_logs"),
                       "--config", "listening", "--set", f"output_dir={work / 'pipeline'}",
                       "--set", beam, "--out", str(tmp_path / "monitoring"), timeout=600)
    assert monitored.returncode == 1, monitored.stdout + monitored.stderr
    assert "FOUND: drift in hour_of_day" in monitored.stdout

    cluster = log.read_text()
    jobs = re.findall(r"^job \S+: (.*)$", cluster, re.M)
    states = re.findall(r"Completed job in [\d.]+ seconds with state (\w+)", cluster)
    assert states and set(states) == {"DONE"} and len(states) == len(jobs), cluster[-3000:]
    # Every Beam job went through the job service, in the order it ran, each known by a
    # transform of its own: v1's pipeline, the monitor, v2's pipeline from the request log
    # (LogExampleGen), the shadow replay, then the TrafficMonitor.
    kinds = {"InputToRecord": "ExampleGen", "GenerateStatistics[train]": "StatisticsGen",
             "WriteTransformFn": "Transform", "ExtractEvaluateAndWriteResults": "Evaluator",
             "WindowStatistics": "monitor", "JoinLabels": "LogExampleGen",
             "PredictBoth": "replay"}
    ran = [[kind for name, kind in kinds.items() if name in job.split(" | ")] for job in jobs]
    assert ran == [[k] for k in (
        "ExampleGen", "StatisticsGen", "Transform", "Evaluator", "monitor",
        "LogExampleGen", "StatisticsGen", "Transform", "Evaluator", "replay", "monitor")], jobs
    # ... and ran its DoFns in worker processes the pool started, not in the driver.
    assert len(re.findall(r"^worker started: ", cluster, re.M)) >= len(jobs)
    assert (work / "replay" / "report.json").exists()
