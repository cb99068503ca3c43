"""`tandem logs cat` and `tandem logs stats` on a log the gateway wrote: real requests through
a running gateway (a clean batch, a schema violation, an unknown user, a mirrored shadow and an
unreachable model server), read back through the CLI."""

import json
import os
import shutil
import time

import grpc
import pytest
from google.protobuf import json_format
from tensorflow.core.example import example_pb2

from tests.conftest import tandem
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
    without_label,
)


def _id(serialized: bytes) -> str:
    return example_pb2.Example.FromString(serialized).features.feature[
        "request_id"].bytes_list.value[0].decode()


@pytest.fixture
def gateway_log(model_server, listening_data, start_gateway, tmp_path):
    """A log directory written by two gateways, and what was sent to them."""
    started = int(time.time())
    training = training_examples(listening_data, 10)
    requests = [request_part(e).SerializeToString() for e in training]
    primary = f"127.0.0.1:{model_server.grpc_port}"
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, primary, log={"dir": str(tmp_path / "logs" / "a")},
        shadow={"address": primary, "model_name": "candidate"}))
    s = stub(gw.port)
    for r in requests[:6]:  # six clean one-example requests
        s.Predict(predict_request([r]), timeout=30)
    bad = example_pb2.Example.FromString(requests[6])
    bad.features.feature["hour_of_day"].int64_list.value[0] = 30  # the schema allows 0-23
    _, call = s.Predict.with_call(predict_request([requests[7], bad.SerializeToString()]),
                                  timeout=30)
    batch_id = dict(call.trailing_metadata())["x-request-id"]
    stranger = example_pb2.Example.FromString(requests[8])
    stranger.features.feature["user_id"].bytes_list.value[0] = b"u999999"
    s.Predict(predict_request([stranger.SerializeToString()]), timeout=30)
    deadline = time.monotonic() + 15
    while gw.gateway.mirror.sent < 8 and time.monotonic() < deadline:
        time.sleep(0.05)  # the mirror calls B on threads of its own, after A answered
    assert gw.gateway.mirror.sent == 8
    source_version = gw.gateway.source_versions["sqlite"]
    gw.stop()
    # A second gateway, whose model server is gone, logging beside the first.
    down = tmp_path / "down"
    down.mkdir()
    gw = start_gateway(gateway_config(down, listening_data, f"127.0.0.1:{free_port()}",
                                      primary={"timeout_s": 2},
                                      log={"dir": str(tmp_path / "logs" / "b")}))
    with pytest.raises(grpc.RpcError):
        stub(gw.port).Predict(predict_request([requests[9]]), timeout=30)
    gw.stop()
    return {"dir": tmp_path / "logs", "training": training, "requests": requests,
            "batch_id": batch_id, "source": source_version,
            "span": (started, int(time.time()))}


@pytest.mark.slow
def test_logs_stats_counts_what_the_gateway_logged(gateway_log):
    done = tandem("logs", "stats", str(gateway_log["dir"]), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["files"] == 2 and summary["records"] == 9 + 8
    assert summary["by_role"] == {"primary": 9, "shadow": 8}
    assert summary["examples"] == 10  # 6 + a batch of 2 + the stranger + the failed one
    assert summary["flagged_examples"] == 1
    assert summary["examples_with_unknown_entities"] == 1
    assert summary["rejected_requests"] == 0
    assert summary["violations"] == {"hour_of_day:INT_TYPE_BIG_INT": 1}
    assert summary["errors"] == {"primary:UNAVAILABLE": 1}
    assert summary["model_versions"] == {"listening/1": 8, "listening/0": 1}
    assert summary["feature_sources"] == {f"sqlite:{gateway_log['source']}": 9}
    assert summary["skipped"] == {"torn": 0, "corrupt": 0, "unreadable": 0}
    start, end = gateway_log["span"]  # the log's timestamps are whole seconds
    assert start <= summary["first"] <= summary["last"] <= end

    text = tandem("logs", "stats", str(gateway_log["dir"]), timeout=120)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("17 records in 2 file(s), ")
    assert "  by role:        primary 9, shadow 8" in lines
    assert "  examples:       10 (1 flagged, 1 with unknown entities; 0 requests rejected)" \
        in lines
    assert "  errors:         primary:UNAVAILABLE 1" in lines
    assert "  violation:      hour_of_day:INT_TYPE_BIG_INT x1" in lines
    assert not any(line.lstrip().startswith("skipped") for line in lines)


@pytest.mark.slow
def test_logs_cat_prints_one_line_per_request_with_its_examples(gateway_log):
    path = str(gateway_log["dir"])
    done = tandem("logs", "cat", path, "--limit", "3", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [_id(r) for r in gateway_log["requests"]]
    # Files in name order: the first gateway's file; records in the order they were written
    # (a shadow record follows its primary, off the request path, so anywhere after it).
    assert len(lines) == 3 and lines[0]["request_id"] == ids[0]
    assert lines[0] == {"request_id": ids[0], "role": "primary", "time": lines[0]["time"],
                        "model": "listening", "version": 1, "examples": 1, "flagged": [],
                        "rejected": False, "error": None}

    every = tandem("logs", "cat", path, "--with-examples", "--full", timeout=120)
    assert every.returncode == 0, every.stderr
    records = [json.loads(line) for line in every.stdout.splitlines()]
    assert len(records) == 17 and every.stderr == ""
    primary = {r["request_id"]: r for r in records if r["role"] == "primary"}
    shadow = {r["request_id"]: r for r in records if r["role"] == "shadow"}
    assert set(primary) == {*ids[:6], gateway_log["batch_id"], ids[8], ids[9]}
    assert set(shadow) == set(primary) - {ids[9]}
    assert all(r["model"] == "candidate" and r["examples"] == [] for r in shadow.values())
    # The logged example is the decorated one: the generator's training row, label aside.
    first = primary[ids[0]]
    assert first["examples"] == [json_format.MessageToDict(example_pb2.Example.FromString(
        without_label(gateway_log["training"][0])))]
    assert "age" in first["examples"][0]["features"]["feature"]
    assert first["sources"] == {"sqlite": gateway_log["source"]} and first["verdict"] == {}
    batch = primary[gateway_log["batch_id"]]
    assert len(batch["examples"]) == 2 and batch["flagged"] == [1]
    assert batch["verdict"]["violations"] == {"1": ["hour_of_day:INT_TYPE_BIG_INT"]}
    assert primary[ids[8]]["verdict"] == {"unknown_entities": {"0": ["user_id=u999999"]}}
    failed = primary[ids[9]]
    assert failed["error"]["code"] == "UNAVAILABLE" and failed["version"] == 0
    assert "primary model server" in failed["error"]["message"]


@pytest.mark.slow
def test_logs_read_past_a_torn_tail_and_refuse_bad_input(gateway_log, tmp_path):
    torn = tmp_path / "torn"
    shutil.copytree(gateway_log["dir"], torn)
    (first,) = (torn / "a").iterdir()  # the first gateway's file: 16 records
    with open(first, "r+b") as f:  # cut into its last record, as a kill can
        f.truncate(os.path.getsize(first) - 40)
    stats = tandem("logs", "stats", str(torn), "--json", timeout=120)
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["skipped"] == {"torn": 1, "corrupt": 0, "unreadable": 0}
    assert summary["records"] == 16
    cat = tandem("logs", "cat", str(torn), timeout=120)
    assert cat.returncode == 0 and len(cat.stdout.splitlines()) == 16
    assert cat.stderr.strip() == "skipped: 1 torn, 0 corrupt, 0 unreadable record(s)"

    not_a_log = tmp_path / "notes" / "x.tfrecord.gz"
    not_a_log.parent.mkdir()
    not_a_log.write_bytes(b"these are not TFRecord frames at all")
    damaged = tandem("logs", "stats", str(not_a_log), "--json", timeout=120)
    assert damaged.returncode == 0
    assert json.loads(damaged.stdout)["skipped"]["corrupt"] == 1

    for args, message in (
            (("cat", str(tmp_path / "nowhere")), "no request-log files match"),
            (("stats", str(tmp_path / "nowhere" / "*.gz")), "no request-log files match"),
            (("cat", str(gateway_log["dir"]), "--limit", "-1"), "--limit must be at least 0"),
            (("cat", str(gateway_log["dir"]), "--limit", "many"), "invalid int value")):
        bad = tandem("logs", *args, timeout=120)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
