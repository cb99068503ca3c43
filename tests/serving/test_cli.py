"""`tandem serve models` as a real process: TF Serving's flags, 127.0.0.1, clean shutdown."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from .conftest import example, free_port

BATCHING = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "batching.config")


def _lines_until(proc, prefix: str, timeout: float) -> list[str]:
    """Lines of proc's stdout up to one starting with `prefix`, read by a thread so that a
    silent or dead process fails the test after `timeout` instead of blocking readline()."""
    found: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            found.put(line)
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = found.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if line.startswith(prefix):
            break
    return lines


@pytest.mark.slow
def test_serve_models_process_answers_and_stops_on_sigterm(model_base, tmp_path):
    port, rest = free_port(), free_port()
    stderr = open(tmp_path / "stderr.txt", "w")  # a file: a full pipe can never stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.pipeline.cli", "serve", "models", f"--port={port}",
         f"--rest_api_port={rest}", "--model_name=scorer", f"--model_base_path={model_base}",
         "--enable_model_warmup=false", "--enable_batching",
         f"--batching_parameters_file={BATCHING}"],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    try:
        lines = _lines_until(proc, "gRPC on", timeout=120)
        errors = (tmp_path / "stderr.txt").read_text()
        assert lines and lines[-1].startswith(f"gRPC on 127.0.0.1:{port}"), "".join(lines) + errors
        assert "model 'scorer': serving version(s) [1]" in "".join(lines)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}"))
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(0.5)]))
        assert stub.Predict(request, timeout=30).model_spec.version.value == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        stderr.close()


@pytest.mark.slow
def test_bad_server_flags_get_one_line_and_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.pipeline.cli", "serve", "models", "--model_name=x"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "tandem: error: give --model_config_file, or both --model_name and --model_base_path"
    )
    missing = tmp_path / "nope.config"
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.pipeline.cli", "serve", "models", f"--model_config_file={missing}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"cannot read model config file {missing}" in proc.stderr

    bad = tmp_path / "batching.config"
    bad.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 4 }\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.pipeline.cli", "serve", "models", "--model_name=x",
         "--model_base_path=/nowhere", "--enable_batching", f"--batching_parameters_file={bad}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"batching parameters file {bad}" in proc.stderr
    assert 'no field named "max_batch_sise"' in proc.stderr


def test_promote_refuses_a_malformed_replica_address_at_once(tmp_path, capsys):
    from tandem.pipeline import cli

    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/nowhere" } }\n')
    for bad in ("localhost", "host:port", "a:1,,b", " , "):
        code = cli.main(["promote", "--model", "m", "--model-version", "1", "--label", "stable",
                         "--model_config_file", str(config), "--replicas", bad])
        err = capsys.readouterr().err
        assert code == 2 and "--replicas" in err, (bad, err)
