"""`tandem data generate --requests --labels` and `tandem traffic send` through a gateway."""

import csv
import os

import tensorflow as tf

from components.datasets import listening
from schemas.request_log import read_records
from serving.traffic import send
from tests.conftest import tandem
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import gateway_config


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
    from schemas.labels import read_labels

    for kind in ("csv", "tfrecord"):
        listening.generate(str(tmp_path / kind), 500, seed=2, requests=True, labels=kind,
                           label_delay_s=60, label_loss=0.2, start_time=1_800_000_000.0)
    as_csv = read_labels(str(tmp_path / "csv" / "span-1" / "labels.csv"))
    as_tfrecord = read_labels(str(tmp_path / "tfrecord" / "span-1" / "labels.tfrecord.gz"))
    assert len(as_csv) > 300 and set(as_csv) == set(as_tfrecord)
    assert all(as_csv[k].value == as_tfrecord[k].value for k in as_csv)
    assert all(abs(as_csv[k].timestamp - as_tfrecord[k].timestamp) <= 0.5 for k in as_csv)
