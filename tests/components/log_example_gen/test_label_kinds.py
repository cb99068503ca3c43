"""LogExampleGen joins int, float and string labels, each as the schema types it, onto the
examples of Predict, Classify and Regress requests as the gateway's writer logs them; a label
that does not fit the kind stops the join with the file and line at fault."""

import json

import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tandem.components.log_example_gen.join import JoinStats, first_places, join_records
from tandem.schemas.labels import BYTES, FLOAT, INT, LabelsError, read_labels
from tandem.schemas.request_log import LogWriter, make_record, read_records

T0 = 1_800_000_000.0
LABEL = "target"


def _example(i: int) -> tf.train.Example:
    e = tf.train.Example()
    f = e.features.feature
    f["request_id"].bytes_list.value.append(f"r{i}".encode())
    f["minutes"].float_list.value.append(i / 4)
    return e


def _write_log(directory) -> list[str]:
    """Six requests, two per API, one example each; the Classify ones carry the device in
    their context, as a client may send it. Returns the example ids in log order."""
    spec = model_pb2.ModelSpec(name="m")
    writer = LogWriter(str(directory))
    for i in range(6):
        example = _example(i)
        api = ("predict", "classify", "regress")[i % 3]
        if api == "predict":
            request = predict_pb2.PredictRequest(model_spec=spec)
            request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto([example.SerializeToString()], dtype=tf.string))
            response = predict_pb2.PredictResponse(model_spec=spec)
        elif api == "classify":
            context = tf.train.Example()
            context.features.feature["device"].bytes_list.value.append(b"tv")
            request = classification_pb2.ClassificationRequest(
                model_spec=spec, input=input_pb2.Input(
                    example_list_with_context=input_pb2.ExampleListWithContext(
                        examples=[example], context=context)))
            response = classification_pb2.ClassificationResponse(model_spec=spec)
        else:
            request = regression_pb2.RegressionRequest(
                model_spec=spec, input=input_pb2.Input(
                    example_list=input_pb2.ExampleList(examples=[example])))
            response = regression_pb2.RegressionResponse(model_spec=spec)
        writer.write(make_record(request=request, response=response, model_name="m",
                                 model_version=1, signature_name="serving_default",
                                 request_id=f"r{i}", example_ids=[f"r{i}"],
                                 timestamp=T0 + i))
    writer.close()
    return [f"r{i}" for i in range(6)]


LABELS = {  # kind -> (the labels file's text per request, the feature's values)
    INT: (["2", "0", "1", "2", "1.0", "0"], "int64_list", [2, 0, 1, 2, 1, 0]),
    FLOAT: (["2.5", "-1", "0.125", "1e3", "7", "0"], "float_list",
            [2.5, -1.0, 0.125, 1000.0, 7.0, 0.0]),
    BYTES: (["äpfel", "kirsche", "2", "banane", "äpfel", "kirsche"], "bytes_list",
            [v.encode() for v in ("äpfel", "kirsche", "2", "banane", "äpfel", "kirsche")]),
}


@pytest.mark.parametrize("kind", [INT, FLOAT, BYTES])
def test_each_kind_of_label_joins_as_the_schema_types_it(tmp_path, kind):
    ids = _write_log(tmp_path / "logs")
    text, field, values = LABELS[kind]
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label\n" + "".join(f"{r},{t}\n" for r, t in zip(ids, text,
                                                                                strict=True)))
    labels = read_labels(str(path), kind=kind)
    files = sorted(str(p) for p in (tmp_path / "logs").iterdir())
    stats = JoinStats()
    rows = list(join_records(read_records(files, files=files), labels, LABEL, kind, 3600.0,
                             stats, first_places(read_records(files, files=files))))
    assert stats.joined == 6 and [rid for rid, _, _ in rows] == ids
    for i, (_, data, _) in enumerate(rows):
        f = tf.train.Example.FromString(data).features.feature
        assert f[LABEL].WhichOneof("kind") == field
        assert list(getattr(f[LABEL], field).value) == [pytest.approx(values[i])]
        assert f["minutes"].float_list.value[0] == i / 4  # the logged example, as it was
        # What the model saw: a Classify request's context features are part of it.
        assert ("device" in f) == (i % 3 == 1)


def _executor(tmp_path, labels_path, kind):
    from tfx.types import standard_artifacts

    from tandem.components.log_example_gen.executor import Executor

    logs, labels, out = (standard_artifacts.Examples(), standard_artifacts.ExternalArtifact(),
                         standard_artifacts.Examples())
    logs.uri, labels.uri, out.uri = (str(tmp_path / "logs"), str(labels_path),
                                     str(tmp_path / "examples"))
    Executor().Do({"request_logs": [logs], "labels": [labels]}, {"examples": [out]},
                  {"label": LABEL, "label_kind": kind, "label_delay_s": 3600.0,
                   "train_buckets": 1, "eval_buckets": 1})
    return out


def test_the_executor_writes_string_labels_and_refuses_a_bad_int_label(tmp_path):
    ids = _write_log(tmp_path / "logs")
    names = tmp_path / "names.csv"
    names.write_text("request_id,label\n" + "".join(f"{r},{t}\n" for r, t in
                                                    zip(ids, LABELS[BYTES][0], strict=True)))
    out = _executor(tmp_path, names, BYTES)
    joined = {}
    for path in tf.io.gfile.glob(str(tmp_path / "examples" / "Split-*" / "*.gz")):
        for raw in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
            f = tf.train.Example.FromString(raw).features.feature
            joined[f["request_id"].bytes_list.value[0].decode()] = \
                f[LABEL].bytes_list.value[0].decode()
    assert joined == dict(zip(ids, LABELS[BYTES][0], strict=True))
    assert json.loads(out.get_string_custom_property("tandem.source"))["join"]["joined"] == 6

    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\nr0,1\nr1,cat\n")
    with pytest.raises(LabelsError, match=f"{bad}:3: label 'cat' is not an integer"):
        _executor(tmp_path, bad, INT)
    with pytest.raises(ValueError, match="label kind must be one of INT, FLOAT, BYTES"):
        _executor(tmp_path, names, "string")
