"""`log.sample_percent` and `shadow.sample_percent` below 100, through a running gateway: the
share of requests logged and mirrored, and which ones (a hash of the request id, so every
replica picks the same)."""

import math
import time

from tandem.schemas.request_log import read_records, sampled
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
)

N = 400


def _within_binomial(count: int, n: int, p: float) -> bool:
    """Four standard deviations: a fair sampler is outside about once in 16,000 runs."""
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def test_log_and_shadow_keep_their_sample_of_requests(model_server, listening_data,
                                                      start_gateway, tmp_path):
    primary = f"127.0.0.1:{model_server.grpc_port}"
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, primary, log={"sample_percent": 30},
        shadow={"address": primary, "model_name": "candidate", "sample_percent": 50}),
        rest=False)
    requests = [request_part(e) for e in training_examples(listening_data, N)]
    ids = [r.features.feature["request_id"].bytes_list.value[0].decode() for r in requests]
    s = stub(gw.port)
    for r in requests:
        s.Predict(predict_request([r.SerializeToString()]), timeout=30)
    mirrored = [i for i in ids if sampled(i, 50)]
    deadline = time.monotonic() + 30
    while gw.gateway.mirror.sent < len(mirrored) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.gateway.mirror.sent == len(mirrored) and gw.gateway.mirror.dropped == 0
    gw.stop()

    records = list(read_records(str(tmp_path / "logs")))
    logged = {r.request_id for r in records if r.role == "primary"}
    assert _within_binomial(len(logged), N, 0.30), len(logged)
    assert _within_binomial(len(mirrored), N, 0.50), len(mirrored)
    # Which requests: the id's hash decides, the same on every replica.
    assert logged == {i for i in ids if sampled(i, 30)}
    assert all(r.sampling_rate == 0.3 for r in records)
    # A request logged was also mirrored (the hash is below 30% of its range, so below
    # 50%): B's answer is logged beside A's for every logged request, and for no other.
    assert {r.request_id for r in records if r.role == "shadow"} == logged
    metrics = gw.gateway.metrics.exposition().decode()
    assert f'tandem_gateway_requests_total{{api="predict",code="OK"}} {float(N)}' in metrics
