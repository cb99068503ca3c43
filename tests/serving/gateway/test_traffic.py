"""`tandem data generate --requests --labels` and `tandem traffic send` through a gateway."""

import csv
import os

import pytest
import tensorflow as tf

from tandem.pipeline.datasets import listening
from tandem.schemas.request_log import read_records
from tandem.serving.traffic import send
from tests.conftest import tandem
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    gateway_config,
    request_part,
    training_examples,
    without_label,
)


def test_requests_and_late_labels_from_the_generator(tmp_path):
    manifest = listening.generate(str(tmp_path), 2000, seed=4, requests=True, labels="csv",
                                  label_delay_s=600, label_loss=0.1, rate=50,
                                  start_time=1_800_000_000.0)
    [path] = [os.path.join(tmp_path, "span-1", f) for f in manifest["files"]]
    examples = [tf.train.Example.FromString(r) for r in
                tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator()]
    assert len(examples) == 2000
    assert all(set(e.features.feature) <= set(listening.REQUEST_FEATURES) for e in examples)
    assert all("age" not in e.features.feature and listening.LABEL not in e.features.feature
               for e in examples)
    with open(tmp_path / "span-1" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert 0.85 * 2000 < len(rows) < 0.95 * 2000  # 10% lost
    assert manifest["labels"]["written"] == len(rows)
    index = {e.features.feature["request_id"].bytes_list.value[0].decode(): i
             for i, e in enumerate(examples)}
    delays = [float(r["timestamp"]) - (1_800_000_000.0 + index[r["request_id"]] / 50)
              for r in rows]
    assert min(delays) >= 0 and 450 < sum(delays) / len(delays) < 750  # mean 600 s
    # The labels are the generator's own: the same rows, decorated, carry the same label.
    full = listening.generate(str(tmp_path / "full"), 2000, seed=4)
    [full_path] = [os.path.join(tmp_path, "full", "span-1", f) for f in full["files"]]
    truth = {}
    for raw in tf.data.TFRecordDataset(full_path, compression_type="GZIP").as_numpy_iterator():
        f = tf.train.Example.FromString(raw).features.feature
        truth[f["request_id"].bytes_list.value[0].decode()] = \
            f[listening.LABEL].int64_list.value[0]
    assert all(truth[r["request_id"]] == int(r["label"]) for r in rows)


def test_traffic_send_through_the_gateway_with_client_side_drift(
        model_server, listening_data, start_gateway, tmp_path):
    listening.generate(str(tmp_path / "req"), 300, seed=11, requests=True)
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}"))
    pattern = str(tmp_path / "req" / "span-1" / "*.tfrecord.gz")
    result = send(f"127.0.0.1:{gw.port}", pattern, "listening", rate=0, batch=3,
                  drift="new_device")
    assert (result.sent, result.ok, result.errors) == (100, 100, {})
    gw.stop()
    records = list(read_records(str(tmp_path / "logs")))
    assert len(records) == 100
    devices = [tf.train.Example.FromString(e).features.feature["device"].bytes_list.value[0]
               for r in records for e in r.examples()]
    assert len(devices) == 300 and 0.04 < devices.count(b"smart_tv") / 300 < 0.18
    # Decorated on the way: the gateway joined the users' and tracks' columns.
    first = tf.train.Example.FromString(records[0].examples()[0])
    assert "age" in first.features.feature and "genre" in first.features.feature


@pytest.mark.slow
def test_traffic_send_bad_input_exits_2(tmp_path):
    listening.generate(str(tmp_path / "req"), 10, seed=1, requests=True)
    pattern = str(tmp_path / "req" / "span-1" / "*.tfrecord.gz")
    nobody = tandem("traffic", "send", "--to", f"127.0.0.1:{free_port()}", "--examples",
                    pattern)
    assert nobody.returncode == 2 and "nothing answers at" in nobody.stderr
    missing = tandem("traffic", "send", "--to", "127.0.0.1:1", "--examples",
                     str(tmp_path / "none-*.gz"))
    assert missing.returncode == 2 and "no example files match" in missing.stderr


def test_labels_as_tfrecord_read_the_same_as_csv(tmp_path):
    from tandem.schemas.labels import read_labels

    for kind in ("csv", "tfrecord"):
        listening.generate(str(tmp_path / kind), 500, seed=2, requests=True, labels=kind,
                           label_delay_s=60, label_loss=0.2, start_time=1_800_000_000.0)
    as_csv = read_labels(str(tmp_path / "csv" / "span-1" / "labels.csv"))
    as_tfrecord = read_labels(str(tmp_path / "tfrecord" / "span-1" / "labels.tfrecord.gz"))
    assert len(as_csv) > 300 and set(as_csv) == set(as_tfrecord)
    assert all(as_csv[k].value == as_tfrecord[k].value for k in as_csv)
    assert all(abs(as_csv[k].timestamp - as_tfrecord[k].timestamp) <= 0.5 for k in as_csv)


def _write_examples(path, examples: list[bytes]) -> str:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for e in examples:
            w.write(e)
    return str(path)


def _sent_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("sent ")]
    return line


@pytest.mark.slow
def test_traffic_send_exits_1_when_some_requests_fail(model_server, listening_data, tmp_path):
    """Decorated examples are answered; undecorated ones lack what the model parses and get
    INVALID_ARGUMENT: the send finishes, counts each failure by status, and exits 1."""
    training = training_examples(listening_data, 9)
    mixed = [request_part(e).SerializeToString() if i % 3 == 2 else without_label(e)
             for i, e in enumerate(training)]
    path = _write_examples(tmp_path / "mixed.tfrecord.gz", mixed)
    done = tandem("traffic", "send", "--to", f"127.0.0.1:{model_server.grpc_port}",
                  "--examples", path, "--rate", "0", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "6 answered, errors: INVALID_ARGUMENT 3" in _sent_line(done.stdout)
    assert _sent_line(done.stdout).startswith("sent 9 requests in ")
    good = _write_examples(tmp_path / "good.tfrecord.gz", [without_label(e) for e in training])
    ok = tandem("traffic", "send", "--to", f"127.0.0.1:{model_server.grpc_port}",
                "--examples", good, "--rate", "0", "--batch", "2", timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sent 5 requests" in ok.stdout and "5 answered, errors: none" in ok.stdout


@pytest.mark.slow
def test_traffic_send_keeps_to_its_rate(model_server, listening_data, tmp_path, capsys):
    """21 requests at --rate 5 are sent at t = 0, 0.2, ..., 4.0 s: the send takes at least
    4 s, and not much more (each answer comes in milliseconds). Unpaced, the same requests
    take well under half of that."""
    good = _write_examples(tmp_path / "good.tfrecord.gz",
                           [without_label(e) for e in training_examples(listening_data, 21)])
    target = f"127.0.0.1:{model_server.grpc_port}"

    def seconds(rate: str) -> float:
        done = tandem("traffic", "send", "--to", target, "--examples", good, "--rate", rate,
                      timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        line = _sent_line(done.stdout)
        assert line.startswith("sent 21 requests in ")
        return float(line.split(" in ")[1].split("s ")[0])

    paced = seconds("5")
    assert 4.0 - 0.05 <= paced < 4.0 + 3.0, paced  # the printed time is rounded to 0.1 s
    assert seconds("0") < paced / 2
    from tandem.pipeline import cli

    assert cli.main(["traffic", "send", "--to", target, "--examples", good, "--rate", "-1"]) == 2
    assert "--rate must be >= 0" in capsys.readouterr().err
