"""`tandem serve models` as a real process: TF Serving's flags, 127.0.0.1, clean shutdown."""

import os
import signal
import subprocess
import sys
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from .conftest import example, free_port

BATCHING = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "batching.config")


def test_serve_models_process_answers_and_stops_on_sigterm(model_base):
    port, rest = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "models", f"--port={port}",
         f"--rest_api_port={rest}", "--model_name=scorer", f"--model_base_path={model_base}",
         "--enable_model_warmup=false", "--enable_batching",
         f"--batching_parameters_file={BATCHING}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("gRPC on"):
                break
        assert lines and lines[-1].startswith(f"gRPC on 127.0.0.1:{port}"), "".join(lines)
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


def test_bad_server_flags_get_one_line_and_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "serve", "models", "--model_name=x"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "tandem: error: give --model_config_file, or both --model_name and --model_base_path"
    )
    missing = tmp_path / "nope.config"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "serve", "models", f"--model_config_file={missing}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"cannot read model config file {missing}" in proc.stderr

    bad = tmp_path / "batching.config"
    bad.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 4 }\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "serve", "models", "--model_name=x",
         "--model_base_path=/nowhere", "--enable_batching", f"--batching_parameters_file={bad}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert f"batching parameters file {bad}" in proc.stderr
    assert 'no field named "max_batch_sise"' in proc.stderr
