"""The request-log contract: one writer, one reader, stock-compatible files."""

import glob
import os
import time
import zlib

import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from tandem.schemas import request_log
from tandem.schemas.request_log import LogWriter, ReadStats, make_record, read_records, sampled


def _example(i: int) -> bytes:
    e = tf.train.Example()
    e.features.feature["request_id"].bytes_list.value.append(f"r{i}".encode())
    e.features.feature["x"].float_list.value.append(float(i))
    return e.SerializeToString(deterministic=True)


def _record(i: int, n: int = 1, **kw) -> bytes:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([_example(i + k) for k in range(n)]))
    response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(name="m"))
    response.model_spec.version.value = 7
    response.outputs["scores"].CopyFrom(tf.make_tensor_proto([[0.25, 0.75]] * n))
    return make_record(request=request, response=response, model_name="m", model_version=7,
                       signature_name="serving_default", request_id=f"r{i}",
                       example_ids=[f"r{i + k}" for k in range(n)], **kw)


def test_round_trip_keeps_every_field(tmp_path):
    writer = LogWriter(str(tmp_path))
    writer.write(_record(0, n=3, verdict={"violations": {"1": ["age:INT_TYPE_SMALL_INT"]}},
                         sources={"sqlite": "abc"}, latency_ms=1.5, sampling_rate=0.5))
    writer.write(_record(3, error=("UNAVAILABLE", "primary down")))
    writer.close()
    records = list(read_records(str(tmp_path)))
    assert [r.request_id for r in records] == ["r0", "r3"]
    first = records[0]
    assert first.example_ids == ["r0", "r1", "r2"]
    assert first.examples() == [_example(0), _example(1), _example(2)]
    assert first.model_version == 7 and first.model_name == "m"
    assert first.verdict == {"violations": {"1": ["age:INT_TYPE_SMALL_INT"]}}
    assert first.sources == {"sqlite": "abc"} and first.latency_ms == 1.5
    assert first.sampling_rate == 0.5 and abs(first.timestamp - time.time()) < 60
    assert records[1].error == {"code": "UNAVAILABLE", "message": "primary down"}


def test_files_are_stock_gzip_tfrecords_of_prediction_logs(tmp_path):
    """What tandem writes, TensorFlow's own reader reads: no private framing."""
    writer = LogWriter(str(tmp_path))
    for i in range(5):
        writer.write(_record(i))
    writer.close()
    (path,) = glob.glob(str(tmp_path / "*.tfrecord.gz"))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    assert [log.predict_log.request.inputs["examples"].string_val[0] for log in logs] == [
        _example(i) for i in range(5)]


def test_reader_reads_tf_serving_warmup_files(tmp_path):
    """Uncompressed TFRecords without tandem's fields: ids come from the file position."""
    path = str(tmp_path / "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(2):
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto([_example(i)]))
            w.write(log.SerializeToString())
    records = list(read_records(path))
    assert [r.request_id for r in records] == ["tf_serving_warmup_requests:0",
                                               "tf_serving_warmup_requests:1"]
    assert records[1].examples() == [_example(1)]


def test_every_written_record_is_readable_before_close(tmp_path):
    """A record is handed to the OS when write returns: a reader sees it at once (this is
    what makes a killed gateway lose nothing it answered)."""
    writer = LogWriter(str(tmp_path), fsync_interval_s=0)
    for i in range(10):
        writer.write(_record(i))
        assert len(list(read_records(str(tmp_path)))) == i + 1
    writer.close()


def test_torn_last_record_is_skipped_and_counted(tmp_path):
    """What a kill mid-write leaves: a GZIP stream never finished, ending inside a record."""
    path = str(tmp_path / "killed.tfrecord.gz")
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    whole = b"".join(request_log.frame(_record(i)) for i in range(3))
    torn = request_log.frame(_record(3))[:40]
    with open(path, "wb") as f:
        f.write(c.compress(whole + torn) + c.flush(zlib.Z_SYNC_FLUSH))
    stats = ReadStats()
    assert [r.request_id for r in read_records(path, stats)] == ["r0", "r1", "r2"]
    assert stats.torn == 1 and stats.records == 3


def test_corrupt_record_is_skipped_and_the_rest_read(tmp_path):
    path = str(tmp_path / "x.tfrecord.gz")
    frames = [request_log.frame(_record(i)) for i in range(3)]
    middle = bytearray(frames[1])
    middle[20] ^= 0xFF  # inside the data: its checksum no longer matches
    frames[1] = bytes(middle)
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(c.compress(b"".join(frames)) + c.flush())
    stats = ReadStats()
    assert [r.request_id for r in read_records(path, stats)] == ["r0", "r2"]
    assert stats.corrupt == 1


def test_files_rotate_by_size_and_by_age(tmp_path):
    by_size = LogWriter(str(tmp_path / "size"), max_bytes=1)
    for i in range(3):
        by_size.write(_record(i))
    by_size.close()
    assert len(by_size.files) == 3
    by_age = LogWriter(str(tmp_path / "age"), max_age_s=0.05)
    by_age.write(_record(0))
    time.sleep(0.1)
    by_age.write(_record(1))
    by_age.close()
    assert len(by_age.files) == 2
    assert [r.request_id for r in read_records(str(tmp_path / "age"))] == ["r0", "r1"]


def test_sampling_is_by_id_and_within_one_percent():
    ids = [f"req-{i}" for i in range(100_000)]
    for percent in (1, 10, 37.5):
        share = sum(sampled(i, percent) for i in ids) / len(ids)
        assert abs(share - percent / 100) < 0.01, (percent, share)
    # The same id gets the same decision every time (every replica agrees).
    assert [sampled(i, 10) for i in ids[:1000]] == [sampled(i, 10) for i in ids[:1000]]
    assert all(sampled(i, 100) for i in ids[:100]) and not any(sampled(i, 0) for i in ids[:100])


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(request_log.LogError, match="no request-log files match"):
        list(read_records(str(tmp_path / "nothing-*.tfrecord.gz")))
    assert not os.listdir(tmp_path)
