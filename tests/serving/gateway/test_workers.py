"""`tandem serve gateway --workers N`: N processes on one port, each logging to files of its
own, all stopped by one SIGTERM with every answered request in the log."""

import os
import re
import signal
import subprocess
import sys

import grpc
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis.prediction_service_pb2_grpc import PredictionServiceStub

from tandem.schemas.request_log import ReadStats, read_records
from tests.conftest import ROOT
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    training_examples,
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_two_workers_share_the_port_log_apart_and_stop_together(model_server, listening_data,
                                                                 tmp_path):
    port = free_port()
    config = gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}")
    proc = subprocess.Popen([sys.executable, "-m", "tandem.pipeline.cli", "serve", "gateway",
                             "--gateway-config", config, "--port", str(port), "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("gRPC on"):
                break
        assert lines and lines[-1].startswith(f"gRPC on 127.0.0.1:{port}"), \
            "".join(lines) + proc.stderr.read()
        pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", "".join(lines)).group(1)
                .split(", ")]
        assert len(pids) == 2 and proc.pid not in pids
        requests = [request_part(e).SerializeToString()
                    for e in training_examples(listening_data, 60)]
        answered = []
        for request in requests:  # a channel per request: a connection each
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            PredictionServiceStub(channel).Predict(predict_request([request]), timeout=30)
            answered.append(example_pb2.Example.FromString(request).features
                            .feature["request_id"].bytes_list.value[0].decode())
            channel.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "gateway stopped" in out
    assert not any(_alive(pid) for pid in pids)  # SIGTERM stopped every worker
    stats = ReadStats()
    records = list(read_records(str(tmp_path / "logs"), stats))
    assert sorted(r.request_id for r in records) == sorted(answered)  # no record lost
    writers = {int(re.search(r"-(\d+)-\d{5}\.tfrecord\.gz$", r.path).group(1))
               for r in records}
    assert writers == set(pids)  # both workers answered, each into files of its own
    assert stats.torn == stats.corrupt == 0
