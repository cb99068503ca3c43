"""The label join, exactly: counts, no leakage, late labels, duplicates, rejected requests;
run through LogExampleGen's executor as TFX calls it."""

import json
import os

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2

from tandem.schemas.request_log import LogWriter, make_record

LABEL = "skipped"
T0 = 1_800_000_000.0


def _example(i: int, with_label: int | None = None) -> bytes:
    e = tf.train.Example()
    f = e.features.feature
    f["request_id"].bytes_list.value.append(f"r{i}".encode())
    f["age"].int64_list.value.append(20 + i % 50)
    f["country"].bytes_list.value.append(b"US" if i % 2 else b"DE")
    if with_label is not None:
        f[LABEL].int64_list.value.append(with_label)
    return e.SerializeToString()


def _write(path, batches):
    """batches: [(ids, examples, role, rejected)]"""
    writer = LogWriter(str(path))
    for n, (ids, examples, role, rejected) in enumerate(batches):
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(name="listening"))
        response.model_spec.version.value = 1
        writer.write(make_record(
            request=request, response=None if rejected else response, model_name="listening",
            model_version=1, signature_name="serving_default", request_id=ids[0],
            example_ids=ids, role=role, timestamp=T0 + n,
            verdict={"rejected": "schema violation"} if rejected else None))
    writer.close()


def _run(tmp_path, logs, labels):
    from tfx.types import standard_artifacts

    from tandem.components.log_example_gen.executor import Executor

    log_artifact = standard_artifacts.Examples()
    log_artifact.uri = str(logs)
    label_artifact = standard_artifacts.ExternalArtifact()
    label_artifact.uri = str(labels)
    out = standard_artifacts.Examples()
    out.uri = str(tmp_path / "examples")
    Executor().Do({"request_logs": [log_artifact], "labels": [label_artifact]},
                  {"examples": [out]},
                  {"label": LABEL, "label_kind": "INT", "label_delay_s": 3600.0,
                   "train_buckets": 2, "eval_buckets": 1})
    joined = {}
    for split in ("train", "eval"):
        for path in tf.io.gfile.glob(str(tmp_path / "examples" / f"Split-{split}" / "*")):
            for raw in tf.data.TFRecordDataset(path, compression_type="GZIP") \
                    .as_numpy_iterator():
                e = tf.train.Example.FromString(raw)
                rid = e.features.feature["request_id"].bytes_list.value[0].decode()
                assert rid not in joined
                joined[rid] = (split, e)
    return out, joined


def test_the_join_is_exact(tmp_path):
    batches = [([f"r{i}"], [_example(i)], "primary", False) for i in range(100)]
    batches.append((["r3"], [_example(3)], "primary", False))  # a retry: a duplicate id
    batches.append((["r7"], [_example(7)], "shadow", False))  # B's answer: not training data
    batches.append(([f"r{i}" for i in range(100, 104)],
                    [_example(i) for i in range(100, 104)], "primary", True))  # rejected
    batches.append((["r104"], [_example(104, with_label=1)], "primary", False))  # label sent
    _write(tmp_path / "logs", batches)
    truth = {f"r{i}": i % 2 for i in range(105)}
    lines = ["request_id,label,timestamp"]
    for i in range(80):  # r80..r99 never get a label
        delay = 7200 if i < 5 else 60  # r0..r4 arrive two hours late
        lines.append(f"r{i},{truth[f'r{i}']},{T0 + i + delay}")
    for i in (10, 11, 12):  # an earlier, wrong label for these: the latest one wins
        lines.append(f"r{i},{1 - truth[f'r{i}']},{T0 + i + 1}")
    for i in range(100, 105):
        lines.append(f"r{i},{truth[f'r{i}']},{T0 + 200}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    artifact, joined = _run(tmp_path, tmp_path / "logs", tmp_path / "labels.csv")
    source = json.loads(artifact.get_string_custom_property("tandem.source"))
    assert source["join"] == {
        "records": 103, "shadow_records": 1, "rejected": 4, "duplicates": 1,
        "unlabelled": 20, "late": 5, "label_in_request": 1, "joined": 76,
        "files": 1, "torn": 0, "corrupt": 0, "unreadable": 0}
    assert sorted(joined, key=lambda r: int(r[1:])) == \
        [f"r{i}" for i in range(5, 80)] + ["r104"]
    for rid, (_, e) in joined.items():
        f = e.features.feature
        assert list(f[LABEL].int64_list.value) == [truth[rid]]  # the file's, and only it
        assert set(f) == {"request_id", "age", "country", LABEL}
    # Bytes: each example is the logged example followed by the label, nothing else.
    i = 42
    _, e = joined[f"r{i}"]
    expected = tf.train.Example.FromString(_example(i, with_label=truth[f"r{i}"]))
    assert e == expected
    splits = {s for s, _ in joined.values()}
    assert splits == {"train", "eval"}
    assert artifact.span == 20270115  # the day of the first logged request (T0, UTC)
    assert json.loads(artifact.split_names) == ["train", "eval"]
    assert os.path.exists(tmp_path / "examples" / "source.json")


def test_a_log_with_no_labelled_example_is_refused(tmp_path):
    import pytest

    _write(tmp_path / "logs", [(["r1"], [_example(1)], "primary", False)])
    (tmp_path / "labels.csv").write_text("request_id,label\nzzz,1\n")
    with pytest.raises(ValueError, match="no example of .* has a label"):
        _run(tmp_path, tmp_path / "logs", tmp_path / "labels.csv")


def test_a_retry_keeps_its_first_logged_occurrence_by_time_not_by_file_name(tmp_path):
    """Another replica logged r3 again later, in a file whose name sorts first: the example
    kept is the one logged first (the rule the shadow replay keeps too)."""
    from tandem.schemas.request_log import write_records

    _write(tmp_path / "logs", [([f"r{i}"], [_example(i)], "primary", False) for i in range(10)])
    retry = tf.train.Example.FromString(_example(3))
    retry.features.feature["age"].int64_list.value[0] = 99
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([retry.SerializeToString()]))
    write_records(str(tmp_path / "logs" / "0-replica-b.tfrecord.gz"), [make_record(
        request=request, response=predict_pb2.PredictResponse(), model_name="listening",
        model_version=1, signature_name="serving_default", request_id="r3",
        example_ids=["r3"], timestamp=T0 + 50)])
    (tmp_path / "labels.csv").write_text(
        "request_id,label\n" + "".join(f"r{i},{i % 2}\n" for i in range(10)))
    artifact, joined = _run(tmp_path, tmp_path / "logs", tmp_path / "labels.csv")
    assert json.loads(artifact.get_string_custom_property("tandem.source"))["join"][
        "duplicates"] == 1
    assert len(joined) == 10
    assert list(joined["r3"][1].features.feature["age"].int64_list.value) == [23]
