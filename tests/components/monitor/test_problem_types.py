"""The monitor on a binary, a multi-class (integer and string labels) and a regression model:
the model's logged answers drift when the model changes though its inputs do not, and the
joined label drifts when what it means changes. Both are named in summary.json and the report,
and nothing is named in the windows where nothing changed."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tandem.components.monitor.predictions import PREDICTED_CLASS, PREDICTION, answer_columns
from tandem.pipeline.config import load_config
from tandem.pipeline.traffic_checks import run_monitor
from tandem.schemas import curated_schema_path, load_schema, write_schema
from tandem.schemas.request_log import LogWriter, make_record, parse_record
from tests.components.monitor.conftest import examples_of

pytestmark = pytest.mark.xdist_group("monitor")

DAYPARTS = ("night", "day", "evening")
WINDOW = 1000  # requests per window; three windows: two alike, then the change


def _features(served: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    f = [tf.train.Example.FromString(d).features.feature for d in served]
    hour = np.array([x["hour_of_day"].int64_list.value[0] for x in f], float)
    minutes = np.array([x["duration_s"].float_list.value[0] for x in f]) / 60.0
    return hour, minutes


def _answers(kind: str, served: list[bytes]) -> np.ndarray:
    """The served model's answer per request; in the third window a new model version
    answers differently on the same kind of traffic."""
    hour, minutes = _features(served)
    changed = np.arange(len(served)) >= 2 * WINDOW
    if kind == "regression":
        return minutes + np.where(changed, 1.0, 0.0)
    if kind == "binary":
        return 1 / (1 + np.exp(-(0.3 * (minutes - 3.7) + np.where(changed, 1.0, 0.0))))
    scores = np.exp(-((hour[:, None] - np.array([[3.5, 11.5, 19.5]])) / 4.0) ** 2)
    scores[changed, 0] += 0.8  # the new version favours "night"
    return scores / scores.sum(axis=1, keepdims=True)


def _labels(kind: str, served: list[bytes]) -> list:
    """The labels that arrive; in the third window they mean something else (more nights,
    longer listening, more skips) though the requests are alike."""
    rng = np.random.default_rng(5)
    hour, minutes = _features(served)
    changed = np.arange(len(served)) >= 2 * WINDOW
    if kind == "regression":
        return (minutes * np.where(changed, 1.5, 1.0) + rng.normal(0, 0.5, len(served))).tolist()
    if kind == "binary":
        return (rng.random(len(served)) < np.where(changed, 0.6, 0.3)).astype(int).tolist()
    ids = (hour // 8).astype(int)
    ids[changed & (rng.random(len(served)) < 0.5)] = 0
    return [DAYPARTS[i] for i in ids] if kind == "multiclass_names" else ids.tolist()


def _response(kind: str, answer: np.ndarray, n: int, spec):
    """Request and response of request `n`, as the gateway logs them: every other request
    goes through Classify or Regress, the rest through Predict."""
    if n % 2 and kind != "binary":
        if kind == "regression":
            response = regression_pb2.RegressionResponse(model_spec=spec)
            response.result.regressions.add(value=float(answer))
            return regression_pb2.RegressionRequest, response
        response = classification_pb2.ClassificationResponse(model_spec=spec)
        row = response.result.classifications.add()
        for name, score in zip(DAYPARTS, answer, strict=True):
            row.classes.add(label=name, score=float(score))
        return classification_pb2.ClassificationRequest, response
    response = predict_pb2.PredictResponse(model_spec=spec)
    outputs = response.outputs
    if kind == "regression":
        outputs["predictions"].CopyFrom(tf.make_tensor_proto(np.asarray([answer], np.float32)))
    elif kind == "binary":
        outputs["probabilities"].CopyFrom(tf.make_tensor_proto(np.asarray([answer], np.float32)))
    else:
        outputs["scores"].CopyFrom(tf.make_tensor_proto(np.asarray([answer], np.float32)))
        outputs["classes"].CopyFrom(tf.make_tensor_proto([list(DAYPARTS)]))
    return predict_pb2.PredictRequest, response


def _write_log(directory, kind: str, examples: list[tuple[str, bytes, int]]) -> None:
    answers = _answers(kind, [b for _, b, _ in examples])
    writer = LogWriter(str(directory))
    for n, ((rid, data, _), answer) in enumerate(zip(examples, answers, strict=True)):
        spec = model_pb2.ModelSpec(name="listening")
        spec.version.value = 1
        request_type, response = _response(kind, answer, n, spec)
        if request_type is predict_pb2.PredictRequest:
            request = predict_pb2.PredictRequest(model_spec=spec)
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
        else:
            request = request_type(model_spec=spec, input=input_pb2.Input(
                example_list=input_pb2.ExampleList(examples=[tf.train.Example.FromString(data)])))
        writer.write(make_record(request=request, response=response, model_name="listening",
                                 model_version=1, signature_name="serving_default",
                                 request_id=rid, example_ids=[rid],
                                 timestamp=1_800_000_000 + n))
    writer.close()


CASES = {  # kind -> (label, its type in the schema, problem type, answers that must drift)
    "binary": ("skipped", schema_pb2.INT, "binary_classification",
               {PREDICTED_CLASS, "score[1]"}),
    "multiclass_ids": ("daypart", schema_pb2.INT, "multiclass_classification",
                       {PREDICTED_CLASS, "score[night]", "score[day]", "score[evening]"}),
    "multiclass_names": ("daypart", schema_pb2.BYTES, "multiclass_classification",
                         {PREDICTED_CLASS, "score[night]", "score[day]", "score[evening]"}),
    "regression": ("minutes_played", schema_pb2.FLOAT, "regression", {PREDICTION}),
}


def _config(tmp_path, kind: str):
    """The listening config with the label and problem type of `kind`, and a schema whose
    label is that feature, typed so (an integer class id without is_categorical: the monitor
    still judges it as a category)."""
    label, dtype, problem, _ = CASES[kind]
    schema = load_schema(curated_schema_path("listening"))
    feature = next(f for f in schema.feature if f.name == "skipped")
    if kind != "binary":
        feature.name, feature.type = label, dtype
        feature.ClearField("int_domain")
        feature.ClearField("drift_comparator")
    path = str(tmp_path / "schema.pbtxt")
    write_schema(schema, path)
    metric = {"binary_classification": "auc", "multiclass_classification": "accuracy",
              "regression": "rmse"}[problem]
    return load_config("listening", [f"schema={path}", f"label={label}",
                                     f"problem_type={problem}", f"evaluation.metric={metric}"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_prediction_and_label_drift_are_named_where_they_happen(kind, monitor_data, tmp_path):
    label, _, _, drifting = CASES[kind]
    examples = examples_of(monitor_data / "clean")[:3 * WINDOW]
    _write_log(tmp_path / "logs", kind, examples)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\n" + "".join(
        f"{rid},{y}\n" for (rid, _, _), y in zip(examples, _labels(kind, [b for _, b, _ in
                                                                          examples]),
                                                  strict=True)))
    summary = run_monitor(str(tmp_path / "logs"), _config(tmp_path, kind),
                          str(tmp_path / "out"), window_records=WINDOW, labels=str(labels))
    windows = summary["windows"]
    assert summary["input"]["answered_examples"] == 3 * WINDOW
    assert summary["input"]["unfit_answers"] == 0
    # The second window is like the first: nothing named. The third: the answers and the
    # label, and no feature (the requests did not change).
    assert windows[1]["prediction_drift"]["alerts"] == [] == windows[1]["drift"]["alerts"]
    assert set(windows[2]["prediction_drift"]["alerts"]) == drifting
    assert summary["prediction_drift_features"] == sorted(drifting)
    assert summary["drift_features"] == [label]
    assert summary["prediction_drift"]["windows"] == {n: [windows[2]["window"]]
                                                      for n in drifting}
    assert summary["label_drift"] == {
        "label": label, "kind": {"regression": "FLOAT", "multiclass_names": "BYTES"}.get(
            kind, "INT"), "labelled_examples": 3 * WINDOW, "drift": [windows[2]["window"]],
        "skew": []}
    measured = windows[2]["drift"]["features"][label]
    assert measured["kind"] == ("numeric" if kind == "regression" else "categorical")
    assert measured["n"] == [WINDOW, WINDOW]
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"prediction drift in {', '.join(sorted(drifting))}" in page
    assert f"label {label} (" in page and f"drift in {windows[2]['window']}" in page


def _record(request, response, n: int = 1):
    return parse_record(make_record(request=request, response=response, model_name="m",
                                    model_version=1, signature_name="s", request_id="r",
                                    example_ids=[f"r/{i}" for i in range(n)]))


def test_answers_read_alike_from_predict_classify_and_regress():
    spec = model_pb2.ModelSpec(name="m")
    scores = np.array([[0.2, 0.7, 0.1], [0.5, 0.2, 0.3]], np.float32)
    predict = predict_pb2.PredictResponse()
    predict.outputs["scores"].CopyFrom(tf.make_tensor_proto(scores))
    predict.outputs["classes"].CopyFrom(tf.make_tensor_proto([list(DAYPARTS)] * 2))
    classify = classification_pb2.ClassificationResponse()
    for row in scores:
        item = classify.result.classifications.add()
        for name, score in zip(DAYPARTS, row, strict=True):
            item.classes.add(label=name, score=float(score))
    columns = [answer_columns(_record(r(model_spec=spec), response, 2).outputs(),
                              "multiclass_classification", 2)
               for r, response in ((predict_pb2.PredictRequest, predict),
                                   (classification_pb2.ClassificationRequest, classify))]
    assert columns[0] == columns[1]
    assert columns[0][PREDICTED_CLASS] == [b"day", b"night"]
    assert columns[0]["score[evening]"] == pytest.approx([0.1, 0.3])

    regress = regression_pb2.RegressionResponse()
    regress.result.regressions.add(value=4.5)
    outputs = _record(regression_pb2.RegressionRequest(model_spec=spec), regress).outputs()
    assert answer_columns(outputs, "regression", 1) == {PREDICTION: [4.5]}
    # An answer that is not of the config's problem type is not guessed at.
    assert answer_columns(outputs, "multiclass_classification", 1) is None
    assert answer_columns(_record(predict_pb2.PredictRequest(model_spec=spec), predict,
                                  2).outputs(), "regression", 2) is None
    # A binary Classify answer: the positive class's score, as Predict's `probabilities`.
    binary = classification_pb2.ClassificationResponse()
    item = binary.result.classifications.add()
    item.classes.add(label="0", score=0.25)
    item.classes.add(label="1", score=0.75)
    outputs = _record(classification_pb2.ClassificationRequest(model_spec=spec),
                      binary).outputs()
    assert outputs["probabilities"].tolist() == [0.75]
    assert answer_columns(outputs, "binary_classification", 1) == {
        PREDICTED_CLASS: [b"1"], "score[1]": [0.75]}
    # Nothing answered (a refused request): no answer at all.
    assert _record(predict_pb2.PredictRequest(model_spec=spec), None).outputs() == {}
