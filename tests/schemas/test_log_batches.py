"""The batch decoder gives what the one-record reader gives: every field, every output array
(dtype and shape), the same order and the same damage counts, whatever the records hold."""

import os
import zlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tandem.schemas import request_log
from tandem.schemas.log_batches import DecodedRecord, read_decoded
from tandem.schemas.request_log import SHADOW, ReadStats, make_record, read_records, write_records


def _example(i: int) -> bytes:
    e = tf.train.Example()
    e.features.feature["request_id"].bytes_list.value.append(f"r{i}".encode())
    e.features.feature["x"].float_list.value.append(float(i) / 3)
    return e.SerializeToString(deterministic=True)


def _tensor(dtype, shape, field=None, values=()) -> tensor_pb2.TensorProto:
    """A TensorProto in the *_val form (as TF Serving writes small answers)."""
    t = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))
    if field:
        getattr(t, field).extend(values)
    return t


def _predict(i: int, n: int, outputs: dict, **kw) -> bytes:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([_example(i + k) for k in range(n)]))
    response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(name="m"))
    for key, tensor in outputs.items():
        response.outputs[key].CopyFrom(tensor)
    kw.setdefault("example_ids", [f"e{i + k}" for k in range(n)])
    return make_record(request=request, response=response if outputs else None,
                       model_name="m", model_version=3 + i % 2, signature_name="serving_default",
                       request_id=f"r{i}", timestamp=1_700_000_000 + i, **kw)


def _records() -> list[bytes]:
    f32, f64, i64, s = types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT64, \
        types_pb2.DT_STRING
    out = []
    for i in range(0, 40, 4):
        n = 1 + i % 3
        out.append(_predict(i, n, {  # tensor_content, as tf.make_tensor_proto writes
            "probabilities": tf.make_tensor_proto(np.linspace(0, 1, n, dtype=np.float32)),
            "classes": tf.make_tensor_proto([[b"no", b"yes"]] * n)}))
        out.append(_predict(i + 1, n, {  # *_val fields, and TF's compact repeated form
            "scores": _tensor(f32, [n, 2], "float_val", [0.25, 0.75] * n),
            "predictions": _tensor(f64, [n], "double_val", [0.5]),
            "count": _tensor(i64, [n], "int64_val", range(n)),
            "names": _tensor(s, [n], "string_val", [b"a"] * n)},
            verdict={"violations": {"0": ["x:BAD"]}}, sources={"users": "v1"},
            latency_ms=2.5, sampling_rate=0.25))
        out.append(_predict(i + 2, n, {}, error=("UNAVAILABLE", "down")))
        out.append(_predict(i + 3, n, {"outputs": _tensor(f32, [n], "float_val", [1.0] * n)},
                            verdict={"rejected": True}, example_ids=[]))
    shadow = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
    out.append(make_record(request=shadow, response=predict_pb2.PredictResponse(),
                           model_name="m", model_version=5, signature_name="serving_default",
                           request_id="r0", example_ids=["e0"], role=SHADOW, timestamp=1))
    classify = classification_pb2.ClassificationRequest()
    classify.input.example_list.examples.add().ParseFromString(_example(99))
    answer = classification_pb2.ClassificationResponse()
    c = answer.result.classifications.add().classes
    c.add(label="no", score=0.4)
    c.add(label="yes", score=0.6)
    out.append(make_record(request=classify, response=answer, model_name="m", model_version=4,
                           signature_name="classification", request_id="c1",
                           example_ids=["c1"], timestamp=2))
    regress = regression_pb2.RegressionRequest()
    regress.input.example_list.examples.add().ParseFromString(_example(98))
    value = regression_pb2.RegressionResponse()
    value.result.regressions.add(value=1.5)
    out.append(make_record(request=regress, response=value, model_name="m", model_version=4,
                           signature_name="regression", request_id="g1", example_ids=["g1"]))
    out.insert(7, b"\xff\xfe not a prediction log")
    return out


def _same(old, new) -> None:
    for name in ("request_id", "role", "example_ids", "verdict", "sources", "error",
                 "latency_ms", "path", "position", "model_name", "model_version", "timestamp",
                 "sampling_rate"):
        assert getattr(new, name) == getattr(old, name), (old.request_id, name)
    assert new.examples() == old.examples(), old.request_id
    a, b = old.outputs(), new.outputs()
    assert sorted(b) == sorted(a), old.request_id
    for key in a:
        assert b[key].dtype == a[key].dtype and b[key].shape == a[key].shape, (old.request_id, key)
        assert np.array_equal(b[key], a[key]), (old.request_id, key)


def _compare(files: list[str], batch: int) -> tuple[ReadStats, list]:
    old_stats, new_stats = ReadStats(), ReadStats()
    old = list(read_records(files, old_stats, files=files))
    new = list(read_decoded(files, new_stats, batch=batch))
    assert len(new) == len(old)
    for a, b in zip(old, new, strict=True):
        _same(a, b)
    assert new_stats == old_stats
    return new_stats, new


@pytest.mark.parametrize("batch", [3, 4096])
def test_the_batch_decoder_reads_every_kind_of_record_as_the_record_reader_does(tmp_path, batch):
    path = str(tmp_path / "a.tfrecord.gz")
    write_records(path, _records())
    stats, records = _compare([path], batch)
    assert stats.records == len(_records()) - 1 and stats.unreadable == 1
    # Predict logs went the batch way, the bad record's neighbours too (the comparison is not
    # between two slow readers).
    decoded = [r for r in records if isinstance(r, DecodedRecord)]
    assert len(decoded) == 41  # 40 answered, failed or refused requests and a shadow record
    assert all(r.log is not None for r in records if r.request_id in ("c1", "g1"))


def test_damaged_and_plain_files_are_read_on_and_counted_alike(tmp_path):
    records = [r for r in _records() if not r.startswith(b"\xff")]
    frames = [request_log.frame(r) for r in records]
    corrupt = bytearray(frames[5])
    corrupt[30] ^= 0xFF  # a bad checksum in the middle: skipped, the rest read
    frames[5] = bytes(corrupt)
    files = []
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    files.append(str(tmp_path / "corrupt.tfrecord.gz"))
    with open(files[-1], "wb") as f:
        f.write(c.compress(b"".join(frames)) + c.flush())
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    files.append(str(tmp_path / "torn.tfrecord.gz"))  # a writer killed mid-record
    with open(files[-1], "wb") as f:
        f.write(c.compress(b"".join(frames[:9]) + frames[9][:40]) + c.flush(zlib.Z_SYNC_FLUSH))
    files.append(str(tmp_path / "appended.tfrecord.gz"))  # two GZIP members, one file
    write_records(files[-1], records[:6])
    with open(files[-1], "ab") as f:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        f.write(c.compress(b"".join(frames[6:12])) + c.flush())
    files.append(str(tmp_path / "tf_serving_warmup_requests"))  # plain, no tandem fields
    with tf.io.TFRecordWriter(files[-1]) as w:
        for i in range(3):
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.inputs["examples"].CopyFrom(tf.make_tensor_proto([_example(i)]))
            w.write(log.SerializeToString())
    for batch in (2, 4096):
        stats, decoded = _compare(files, batch)
        # the bad record sits in the first two files
        assert stats.corrupt == 2 and stats.torn == 1 and stats.files == 4
        assert decoded[-1].request_id == "tf_serving_warmup_requests:2"
    assert os.path.getsize(files[1]) > 0


def test_a_last_record_torn_inside_its_header_is_counted(tmp_path):
    """tf.data stops quietly at a header cut short; the reader still counts the torn record."""
    frames = [request_log.frame(r) for r in _records() if not r.startswith(b"\xff")][:6]
    for cut in (1, 7, 11, 20):
        files = [str(tmp_path / f"plain-{cut}"), str(tmp_path / f"live-{cut}.tfrecord.gz")]
        with open(files[0], "wb") as f:
            f.write(b"".join(frames[:5]) + frames[5][:cut])
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        with open(files[1], "wb") as f:  # a live writer's file: no GZIP trailer yet
            f.write(c.compress(b"".join(frames[:5]) + frames[5][:cut]) + c.flush(zlib.Z_SYNC_FLUSH))
        stats, _ = _compare(files, 4096)
        assert stats.torn == 2 and stats.records == 10, cut


def _raw(name: bytes, signature: bytes, origin: bytes) -> bytes:
    """A PredictionLog written field by field, so that its strings can be anything."""
    f = request_log._field
    request = predict_pb2.PredictRequest()
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([_example(1)]))
    return f(1, f(1, f(1, name) + f(3, signature)) + f(6, origin)) + \
        f(6, f(1, request.SerializeToString()))


def test_records_the_protobuf_parser_refuses_are_unreadable_and_move_no_neighbour(tmp_path):
    """A request_origin that is not one JSON object, and strings that are not UTF-8, cost
    only their own record (counted unreadable, as the record reader counts them)."""
    good = [_predict(i, 1, {"outputs": _tensor(types_pb2.DT_FLOAT, [1], "float_val", [1.0])})
            for i in range(4)]
    bad = [_raw(b"m", b"s", b'tandem/1 {"id":"a"},{"id":"b"}'),
           _raw(b"m", b"s", b"tandem/1 [1]"),
           _raw(b"\xff\xfe", b"s", b'tandem/1 {"id":"u1"}'),
           _raw(b"m", b"\xc3", b'tandem/1 {"id":"u2"}')]
    files = [str(tmp_path / "a.tfrecord.gz"), str(tmp_path / "b.tfrecord.gz")]
    write_records(files[0], [good[0], bad[0], good[1]])  # one file, one batch each
    write_records(files[1], [bad[1], good[2], bad[2], bad[3], good[3]])
    stats, records = _compare(files, 4096)
    assert [r.request_id for r in records if isinstance(r, DecodedRecord)] == \
        ["r0", "r1", "r2", "r3"]
    assert stats.records == 4 and stats.unreadable == 4


def test_answers_as_arrays_fall_back_where_requests_answer_in_different_widths(tmp_path):
    """`output_rows` gives every example's row only when each request's answer holds the
    same number of values per example; two widths in one decode call give None (the reader
    then reads those requests one at a time) rather than rows cut in the wrong places."""
    from tandem.schemas.log_batches import read_parts

    f32 = types_pb2.DT_FLOAT
    same = [_predict(0, 2, {"scores": _tensor(f32, [2, 2], "float_val", [0.1, 0.9, 0.2, 0.8])}),
            _predict(2, 1, {"scores": tf.make_tensor_proto(np.array([[0.3, 0.7]], np.float32))})]
    mixed = same + [_predict(3, 2, {"scores": _tensor(f32, [2], "float_val", [0.4, 0.6])})]
    for name, records in (("same", same), ("mixed", mixed)):
        path = str(tmp_path / f"{name}.tfrecord.gz")
        write_records(path, records)
        (part,) = list(read_parts([path]))
        rows = np.array(part.rows)
        counts = np.array([part.batch.examples_count(r) for r in part.rows])
        got = part.batch.output_rows(rows, "scores", counts)
        if name == "same":
            assert got.shape == (3, 2)
            assert np.allclose(got, [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
        else:
            assert got is None


def test_a_key_written_twice_answers_with_its_last_value_as_protobuf_reads_it(tmp_path):
    """A response whose outputs map holds a key twice on the wire (two serialized responses
    concatenated): protobuf keeps the last entry, and so must the arrays."""
    from google.protobuf.internal.encoder import _VarintBytes
    from tensorflow_serving.apis import prediction_log_pb2

    from tandem.schemas.log_batches import read_parts

    def field(number: int, data: bytes) -> bytes:
        return _VarintBytes(number << 3 | 2) + _VarintBytes(len(data)) + data

    f32 = types_pb2.DT_FLOAT
    answers = b""
    for value in (0.1, 0.9):
        response = predict_pb2.PredictResponse()
        response.outputs["probabilities"].CopyFrom(_tensor(f32, [1], "float_val", [value]))
        answers += response.SerializeToString()
    log = prediction_log_pb2.PredictionLog.FromString(_predict(0, 1, {}))
    predict = field(1, log.predict_log.request.SerializeToString()) + field(2, answers)
    data = field(1, log.log_metadata.SerializeToString()) + field(6, predict)
    path = str(tmp_path / "twice.tfrecord.gz")
    write_records(path, [data])
    (record,) = list(read_records(path))
    assert record.outputs()["probabilities"].tolist() == pytest.approx([0.9])
    (part,) = list(read_parts([path]))
    assert part.rows == [0]  # the batch decoder took it
    got = part.batch.output_rows(np.array(part.rows), "probabilities", np.array([1]))
    assert got.ravel().tolist() == pytest.approx([0.9])
