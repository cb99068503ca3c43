"""The gateway end to end: real clients (PredictionServiceStub, HTTP) against the gateway and
the embedded model server on 127.0.0.1."""

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tandem.schemas.request_log import ReadStats, read_records
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    DelayProxy,
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
    without_label,
)


def _requests(data, n, start=0):
    return [request_part(e).SerializeToString() for e in training_examples(data)[start:start + n]]


def _probabilities(response):
    return tf.make_ndarray(response.outputs["probabilities"])


def test_answers_and_log_match_the_generators_training_rows(model_server, listening_data,
                                                            start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}"))
    training = training_examples(listening_data)[:40]
    requests = [request_part(e).SerializeToString() for e in training]
    via_gateway, direct, ids = [], [], []
    for i in range(0, 40, 8):  # batches of 8
        response, call = stub(gw.port).Predict.with_call(predict_request(requests[i:i + 8]))
        via_gateway.append(_probabilities(response))
        ids.append(dict(call.trailing_metadata())["x-request-id"])
        direct.append(_probabilities(stub(model_server.grpc_port).Predict(
            predict_request([without_label(e) for e in training[i:i + 8]]))))
    # A's answer through the gateway is the model server's answer on the decorated example.
    np.testing.assert_array_equal(np.concatenate(via_gateway), np.concatenate(direct))
    gw.stop()
    records = list(read_records(str(tmp_path / "logs")))
    assert [r.request_id for r in records] == ids
    logged = [e for r in records for e in r.examples()]
    # The same features as the training rows (the bytes differ only in the order the client
    # serialized its request features in; the decoration test pins byte identity).
    assert [example_pb2.Example.FromString(e) for e in logged] == [
        example_pb2.Example.FromString(without_label(e)) for e in training]
    first = records[0]
    assert first.model_version == 1 and first.verdict == {}
    assert first.example_ids == [example_pb2.Example.FromString(e).features.feature[
        "request_id"].bytes_list.value[0].decode() for e in requests[:8]]
    assert list(first.sources) == ["sqlite"]


def test_a_single_example_request_is_known_by_its_own_id(model_server, listening_data,
                                                         start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}"))
    (request,) = _requests(listening_data, 1)
    _, call = stub(gw.port).Predict.with_call(predict_request([request]))
    own = example_pb2.Example.FromString(request).features.feature["request_id"]
    assert dict(call.trailing_metadata())["x-request-id"] == own.bytes_list.value[0].decode()


def test_rest_predict_and_classify_through_the_gateway(model_server, listening_data,
                                                       start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}"))
    (request,) = _requests(listening_data, 1)
    url = f"http://127.0.0.1:{gw.rest_port}/v1/models/listening"
    body = json.dumps({"instances": [{"b64": base64.b64encode(request).decode()}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + ":predict", data=body)) as r:
        predicted = json.loads(r.read())["predictions"][0]
        assert r.headers["x-request-id"]
    grpc_answer = _probabilities(stub(gw.port).Predict(predict_request([request])))
    assert predicted["probabilities"] == pytest.approx(float(grpc_answer[0]), rel=1e-6)
    # :classify takes the request features as JSON; the gateway types them by the schema.
    features = example_pb2.Example.FromString(request).features.feature
    as_json = {k: (f.bytes_list.value[0].decode() if f.bytes_list.value else
                   f.int64_list.value[0]) for k, f in features.items()}
    body = json.dumps({"signature_name": "classification", "examples": [as_json]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + ":classify", data=body)) as r:
        (result,) = json.loads(r.read())["results"]
    assert result[1] == ["1", pytest.approx(float(grpc_answer[0]), rel=1e-6)]
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.rest_port}/monitoring/prometheus/metrics") as r:
        metrics = r.read().decode()
    assert 'tandem_gateway_requests_total{api="predict",code="OK"} 2.0' in metrics
    assert 'tandem_gateway_stage_seconds_count{stage="decorate"} 3.0' in metrics
    # Each feature source's time per request, and the features it supplies (Data 3).
    assert 'tandem_gateway_source_seconds_count{table="users"} 3.0' in metrics
    assert 'tandem_gateway_source_seconds_count{table="tracks"} 3.0' in metrics
    assert 'tandem_gateway_source_features{feature="genre",table="tracks"} 1.0' in metrics
    assert 'tandem_gateway_source_features{feature="age",table="users"} 1.0' in metrics


def _status(call, *args):
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value.code(), info.value.details()


def test_bad_input_gets_a_clear_status_and_a_counter(model_server, listening_data,
                                                     start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}"),
                       max_request_bytes=1 << 20)
    s = stub(gw.port)
    code, text = _status(s.Predict, predict_request([b"\xff not an example"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a serialized tf.Example" in text
    (good,) = _requests(listening_data, 1)
    no_key = example_pb2.Example.FromString(good)
    del no_key.features.feature["user_id"]
    code, text = _status(s.Predict, predict_request([no_key.SerializeToString()]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "entity key 'user_id' is missing" in text
    wrong_dtype = predict_request([good])
    wrong_dtype.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    code, text = _status(s.Predict, wrong_dtype)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "DT_STRING" in text
    code, _ = _status(s.Predict, predict_request([good] * 12000))  # about 2 MB
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = grpc.insecure_channel(f"127.0.0.1:{gw.port}").unary_unary(
        "/tensorflow.serving.PredictionService/Predict")
    code, _ = _status(raw, b"\x0a\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    metrics = gw.gateway.metrics.exposition().decode()
    assert 'tandem_gateway_bad_requests_total{reason="not_an_example"} 1.0' in metrics
    assert 'tandem_gateway_bad_requests_total{reason="invalid_argument"} 3.0' in metrics
    # REST: the same refusals with TF Serving's HTTP statuses.
    url = f"http://127.0.0.1:{gw.rest_port}/v1/models/listening:predict"
    for body, status in ((b"{not json", 400), (b"x" * (2 << 20), 413),
                         (json.dumps({"instances": [{"b64": "AAAA"}]}).encode(), 400)):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, data=body))
        assert info.value.code == status
        assert "error" in json.loads(info.value.read() or b"{}") or status == 413


def test_unreachable_primary_is_unavailable_and_still_logged(listening_data, start_gateway,
                                                             tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data, f"127.0.0.1:{free_port()}",
                                      primary={"timeout_s": 2}))
    (good,) = _requests(listening_data, 1)
    code, text = _status(stub(gw.port).Predict, predict_request([good]))
    assert code == grpc.StatusCode.UNAVAILABLE and "primary model server" in text
    gw.stop()
    (record,) = read_records(str(tmp_path / "logs"))
    assert record.error["code"] == "UNAVAILABLE"
    assert record.examples()[0] != good  # decorated before the call was tried


def test_unknown_entities_are_flagged_or_refused(model_server, listening_data, start_gateway,
                                                 tmp_path):
    primary = f"127.0.0.1:{model_server.grpc_port}"
    (good,) = _requests(listening_data, 1)
    stranger = example_pb2.Example.FromString(good)
    stranger.features.feature["user_id"].bytes_list.value[0] = b"u999999"
    gw = start_gateway(gateway_config(tmp_path, listening_data, primary))
    response = stub(gw.port).Predict(predict_request([stranger.SerializeToString()]))
    assert _probabilities(response).shape == (1,)  # filled with defaults, answered
    gw.stop()
    (record,) = read_records(str(tmp_path / "logs"))
    assert record.verdict["unknown_entities"] == {"0": ["user_id=u999999"]}
    strict = tmp_path / "strict"
    strict.mkdir()
    gw = start_gateway(gateway_config(strict, listening_data, primary,
                                      decorate={"on_missing": "reject"}))
    code, text = _status(stub(gw.port).Predict, predict_request([stranger.SerializeToString()]))
    assert code == grpc.StatusCode.NOT_FOUND and "u999999" in text


def test_validation_flags_by_default_and_rejects_by_policy(model_server, listening_data,
                                                           start_gateway, tmp_path):
    primary = f"127.0.0.1:{model_server.grpc_port}"
    requests = _requests(listening_data, 2)
    bad = example_pb2.Example.FromString(requests[1])
    bad.features.feature["hour_of_day"].int64_list.value[0] = 30
    bad.features.feature["device"].bytes_list.value[0] = b"smart_tv"
    batch = [requests[0], bad.SerializeToString()]
    gw = start_gateway(gateway_config(tmp_path, listening_data, primary))
    assert _probabilities(stub(gw.port).Predict(predict_request(batch))).shape == (2,)
    gw.stop()
    (record,) = read_records(str(tmp_path / "logs"))
    assert record.verdict["violations"] == {"1": [
        "device:ENUM_TYPE_UNEXPECTED_STRING_VALUES", "hour_of_day:INT_TYPE_BIG_INT"]} or \
        sorted(record.verdict["violations"]["1"]) == [
        "device:ENUM_TYPE_UNEXPECTED_STRING_VALUES", "hour_of_day:INT_TYPE_BIG_INT"]
    strict = tmp_path / "strict"
    strict.mkdir()
    gw = start_gateway(gateway_config(strict, listening_data, primary,
                                      validate={"features": {"hour_of_day": "reject"}}))
    code, text = _status(stub(gw.port).Predict, predict_request(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "hour_of_day:INT_TYPE_BIG_INT" in text and "device:ENUM_TYPE_UNEXPECTED" in text
    # A policy on another feature lets the same request through.
    assert _probabilities(stub(gw.port).Predict(predict_request([requests[0]]))).shape == (1,)


class Webhook:
    def __init__(self):
        import http.server

        events = self.events = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _wait(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_an_outlier_burst_raises_the_alert_and_it_clears(model_server, listening_data,
                                                         start_gateway, tmp_path, caplog):
    """A feature source goes bad for some users (negative ages); traffic for them is an
    outlier burst that the alert catches, and it clears once the burst is over."""
    import shutil
    import sqlite3

    broken = tmp_path / "features.sqlite"
    shutil.copy(listening_data / "features.sqlite", broken)
    with sqlite3.connect(broken) as con:
        con.execute("UPDATE users SET age = -5 WHERE user_id < 'u000100'")
    hook = Webhook()
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}",
        decorate={"sqlite": str(broken)},
        validate={"window_s": 2, "min_examples": 40, "webhook": hook.url}))
    s = stub(gw.port)
    clean = [r for r in _requests(listening_data, 400)
             if example_pb2.Example.FromString(r).features.feature["user_id"].bytes_list
             .value[0] >= b"u000100"]
    firing = lambda: gw.gateway.metrics.alert_firing.labels("age")._value.get()  # noqa: E731
    for r in clean[:60]:
        s.Predict(predict_request([r]))
    gw.gateway.window.evaluate()
    assert firing() == 0
    for i, r in enumerate(clean[60:120]):  # the burst: half the traffic hits broken users
        e = example_pb2.Example.FromString(r)
        if i % 2:
            e.features.feature["user_id"].bytes_list.value[0] = f"u{i:06d}".encode()
        s.Predict(predict_request([e.SerializeToString()]))
    assert _wait(lambda: firing() == 1)
    assert _wait(lambda: bool(hook.events))
    assert hook.events[0]["feature"] == "age" and hook.events[0]["state"] == "firing"
    # It fires as soon as the window's rate passes the threshold (at least min_examples).
    assert hook.events[0]["threshold"] == 0.01
    assert hook.events[0]["rate"] > 0.01 and hook.events[0]["examples"] >= 40
    assert "ALERT FeatureViolationRate FIRING: 'age'" in caplog.text
    metrics = gw.gateway.metrics.exposition().decode()
    assert 'tandem_gateway_violations_total{feature="age",type="INT_TYPE_SMALL_INT"} 30.0' in metrics
    time.sleep(2.1)  # the burst leaves the window; clean traffic only
    for r in clean[120:200]:
        s.Predict(predict_request([r]))
    assert _wait(lambda: firing() == 0)
    assert _wait(lambda: len(hook.events) >= 2)
    assert [e["state"] for e in hook.events if e["feature"] == "age"] == ["firing", "cleared"]


def _load(port: int, requests: list[bytes], seconds: float, threads: int = 4):
    """Closed-loop load for `seconds`: (answers by request index, errors, latencies)."""
    answers, errors, latencies = {}, [], []
    stop = time.monotonic() + seconds

    def client(k):
        s = stub(port)
        i = k
        while time.monotonic() < stop:
            index = i % len(requests)
            t = time.perf_counter()
            try:
                answers[index] = float(_probabilities(s.Predict(
                    predict_request([requests[index]]), timeout=10))[0])
                latencies.append(time.perf_counter() - t)
            except grpc.RpcError as e:
                errors.append(e.code())
            i += threads

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return answers, errors, latencies


def test_shadow_answers_are_logged_beside_the_primary(model_server, listening_data,
                                                      start_gateway, tmp_path):
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}",
        shadow={"address": f"127.0.0.1:{model_server.grpc_port}", "model_name": "candidate"}))
    requests = _requests(listening_data, 20)
    for r in requests:
        stub(gw.port).Predict(predict_request([r]))
    assert _wait(lambda: gw.gateway.mirror.sent == 20)
    gw.stop()
    records = list(read_records(str(tmp_path / "logs")))
    primary = {r.request_id: r for r in records if r.role == "primary"}
    shadow = {r.request_id: r for r in records if r.role == "shadow"}
    assert set(primary) == set(shadow) and len(primary) == 20
    some = next(iter(primary))
    a = tf.make_ndarray(primary[some].log.predict_log.response.outputs["probabilities"])
    b = tf.make_ndarray(shadow[some].log.predict_log.response.outputs["probabilities"])
    assert shadow[some].model_name == "candidate" and shadow[some].latency_ms > 0
    assert b[0] > a[0]  # B's bias is higher: its answer, not A's, was logged
    assert not shadow[some].examples()  # the examples live in A's record


def test_primary_answers_from_stable_and_the_mirror_goes_to_canary(
        listening_data, start_server, start_gateway, tmp_path):
    """Labels route the flow: stable answers the caller, canary gets the mirrored copy,
    even though canary is the newest version (which a request naming no version gets)."""
    from tests.serving.gateway.conftest import make_listening_model

    os.makedirs(tmp_path / "models")
    make_listening_model(str(tmp_path / "models"), 1, 0.0)
    make_listening_model(str(tmp_path / "models"), 2, 0.4)
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "listening" base_path: "{tmp_path / "models"}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 '
        'versions: 2 } } version_labels { key: "stable" value: 1 } version_labels { '
        'key: "canary" value: 2 } } }\n')
    server = start_server(model_config_file=str(config),
                          allow_version_labels_for_unavailable_models=True)
    address = f"127.0.0.1:{server.grpc_port}"
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, address, primary={"version_label": "stable"},
        shadow={"address": address, "model_name": "listening", "version_label": "canary"}))
    for r in _requests(listening_data, 10):
        assert stub(gw.port).Predict(predict_request([r])).model_spec.version.value == 1
    pinned = predict_request(_requests(listening_data, 1))
    pinned.model_spec.version.value = 2  # a client's own choice of version is kept
    assert stub(gw.port).Predict(pinned).model_spec.version.value == 2
    assert _wait(lambda: gw.gateway.mirror.sent == 11)
    gw.stop()
    records = list(read_records(str(tmp_path / "logs")))
    assert sorted(r.model_version for r in records if r.role == "primary") == [1] * 10 + [2]
    assert {r.model_version for r in records if r.role == "shadow"} == {2}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["killed", "slowed"])
def test_a_failing_or_slow_shadow_never_changes_the_primary(fault, model_server, listening_data,
                                                            start_gateway, tmp_path):
    """B killed, or ten times slower than A, mid-load: A's answers stay identical and A never
    fails; mirror calls that cannot be made are dropped and counted."""
    primary = f"127.0.0.1:{model_server.grpc_port}"
    requests = _requests(listening_data, 50)
    reference = {i: float(_probabilities(stub(model_server.grpc_port).Predict(
        predict_request([without_label(e)])))[0])
        for i, e in enumerate(training_examples(listening_data)[:50])}
    proxy = DelayProxy(primary, delay_s=0.0)
    gw = start_gateway(gateway_config(
        tmp_path, listening_data, primary,
        shadow={"address": f"127.0.0.1:{proxy.port}", "model_name": "candidate",
                "queue_size": 8, "timeout_s": 2}))
    before, errors_before, _ = _load(gw.port, requests, 0.7)
    calls_before = proxy.calls
    if fault == "killed":
        proxy.stop()
    else:
        proxy.delay_s = 0.05  # A answers in a few ms
    during, errors_during, _ = _load(gw.port, requests, 1.2)
    proxy.stop()
    assert not errors_before and not errors_during
    assert calls_before > 0
    for answers in (before, during):
        assert answers and all(answers[i] == reference[i] for i in answers)
    mirror = gw.gateway.mirror
    if fault == "killed":
        assert _wait(lambda: mirror.failed > 0)
        # A dead shadow is paused after failures in a row: no calls, no work per request.
        down = gw.gateway.metrics.mirror_dropped.labels("shadow_down")
        assert _wait(lambda: down._value.get() > 0)
    else:
        assert mirror.dropped > 0  # the queue (8) filled behind the slow shadow


@pytest.mark.slow
def test_kill_9_under_load_loses_no_answered_request(model_server, listening_data, tmp_path):
    """With the shipped log config (its fsync_interval_s, the sync thread running beside the
    writes for more than one interval), what the README promises of a gateway killed with
    SIGKILL under load: every request that got an answer is in the log (each record reaches
    the OS before its answer goes out, so the fsync interval bounds only what a machine crash
    could lose), and a torn last record, what a kill can leave, is skipped and counted by
    the reader, never fatal."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    import yaml

    from tandem.serving.gateway.config import Log
    from tests.conftest import ROOT

    interval = Log().fsync_interval_s  # the default, and what deploy/ ships:
    with open(os.path.join(ROOT, "deploy", "gateway", "listening.yaml")) as f:
        assert yaml.safe_load(f)["log"]["fsync_interval_s"] == interval > 0
    port = free_port()
    config = gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}",
                            log={"fsync_interval_s": interval})
    proc = subprocess.Popen([sys.executable, "-m", "tandem.pipeline.cli", "serve", "gateway",
                             "--gateway-config", config, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: _reachable(port), timeout=60), proc.stderr.read()
        requests = _requests(listening_data, 600)
        ids = [example_pb2.Example.FromString(r).features.feature["request_id"]
               .bytes_list.value[0].decode() for r in requests]
        answered, cut, stop = [], [], threading.Event()

        def client(k):
            s, i = stub(port), k
            while not stop.is_set():
                try:
                    s.Predict(predict_request([requests[i % len(requests)]]), timeout=5)
                    answered.append(ids[i % len(requests)])
                except grpc.RpcError as e:
                    cut.append(e.code())
                    return
                i += 4

        workers = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        assert _wait(lambda: len(answered) >= 1)
        started = time.monotonic()  # the log file is open: the sync thread now fsyncs it
        assert _wait(lambda: len(answered) >= 100
                     and time.monotonic() - started > 1.25 * interval, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        stop.set()
        for w in workers:
            w.join()
    finally:
        proc.kill()
        proc.communicate()
    assert len(answered) >= 100 and cut  # killed with requests in flight
    stats = ReadStats()
    logged = {r.request_id for r in read_records(str(tmp_path / "logs"), stats)}
    assert set(answered) <= logged, sorted(set(answered) - logged)[:5]  # no answer lost
    assert stats.corrupt == 0 and stats.unreadable == 0 and stats.torn <= stats.files

    # A kill landing inside a write tears the last record. This one usually falls between
    # writes (each is one write call); then tear the newest file's last record as it would.
    torn = tmp_path / "torn"
    shutil.copytree(tmp_path / "logs", torn)
    newest = max(torn.rglob("*.gz"), key=lambda p: p.name)
    before = ReadStats()
    whole = sum(1 for _ in read_records(str(newest), before))
    if before.torn == 0:
        with open(newest, "r+b") as f:
            f.truncate(newest.stat().st_size - 40)
        after = ReadStats()
        assert sum(1 for _ in read_records(str(newest), after)) == whole - 1
        assert (after.torn, after.corrupt) == (1, 0)


def _reachable(port: int) -> bool:
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=0.5)
        return True
    except grpc.FutureTimeoutError:
        return False


def test_config_errors_are_one_line_and_exit_2(listening_data, tmp_path):
    from tests.conftest import tandem

    config = gateway_config(tmp_path, listening_data, "127.0.0.1:1")
    cases = {
        ("--set", "shadow.queue_sise=3"): "unknown key 'shadow.queue_sise' in gateway config; "
                                          "known: address, model_name, queue_size, "
                                          "sample_percent, timeout_s, version_label, workers",
        ("--set", "log.sample_percent=lots"): "key 'log.sample_percent' in gateway config: "
                                              "expected a number, got 'lots'",
        ("--set", "validate.policy=drop"): "key 'validate.policy' in gateway config: expected "
                                           "one of flag, reject, got 'drop'",
        ("--set", "decorate.sqlite=/nonexistent.sqlite"): "No such file",
        ("--set", "decorate.joins=[{key: user_id, table: people, columns: [age]}]"):
            "has no table 'people'",
    }
    for args, message in cases.items():
        proc = tandem("serve", "gateway", "--gateway-config", config, "--port", "0", *args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)


@pytest.mark.slow
def test_the_gateway_and_the_model_server_bind_loopback_by_default(listening_models,
                                                                  listening_data, tmp_path):
    """Started without --host, `tandem serve models` and `tandem serve gateway` listen on
    127.0.0.1 only (TF Serving binds every interface): every listening socket of theirs is
    bound to 127.0.0.1, and none answers on this machine's other addresses."""
    import ipaddress
    import socket
    import subprocess
    import sys

    import psutil

    from tests.conftest import ROOT

    grpc_port, rest_port, gw_port, gw_rest_port = (free_port() for _ in range(4))
    config = gateway_config(tmp_path, listening_data, f"127.0.0.1:{grpc_port}")
    commands = {
        "model server": ["serve", "models", f"--port={grpc_port}",
                         f"--rest_api_port={rest_port}", "--model_name=listening",
                         f"--model_base_path={listening_models / 'listening'}"],
        "gateway": ["serve", "gateway", "--gateway-config", config, "--port", str(gw_port),
                    "--rest_api_port", str(gw_rest_port)],
    }
    ports = {"model server": {grpc_port, rest_port}, "gateway": {gw_port, gw_rest_port}}
    procs = {name: subprocess.Popen([sys.executable, "-m", "tandem.pipeline.cli", *argv], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, argv in commands.items()}

    def ipv4(ip):  # gRPC listens on a dual-stack socket: ::ffff:127.0.0.1 is 127.0.0.1
        address = ipaddress.ip_address(ip)
        return str(getattr(address, "ipv4_mapped", None) or address)

    def listening(name):
        return [c for c in psutil.Process(procs[name].pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN]

    try:
        for name, proc in procs.items():
            assert _wait(lambda n=name: {c.laddr.port for c in listening(n)} >= ports[n],
                         timeout=90), (name, proc.poll())
            sockets = listening(name)
            assert {c.laddr.port for c in sockets} == ports[name], (name, sockets)
            assert {ipv4(c.laddr.ip) for c in sockets} == {"127.0.0.1"}, (name, sockets)
        # Reachable on 127.0.0.1, refused on every other address of this machine.
        others = [a.address for addresses in psutil.net_if_addrs().values() for a in addresses
                  if a.family in (socket.AF_INET, socket.AF_INET6)
                  and not a.address.startswith(("127.", "::1", "fe80:"))]
        for port in set().union(*ports.values()):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            for address in others:
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection((address, port), timeout=5).close()
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=30)
