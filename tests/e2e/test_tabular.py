"""End-to-end: the pipeline on unseen tabular CSVs as a new user would run it (a minimal config,
`schema propose`, `run`): multi-class with integer and with string labels, and regression on a
label far from zero. The served scores, the Evaluator and a client must agree on the classes."""

import csv
import io
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tandem.components.build_record import load_record
from tandem.pipeline import cli
from tandem.pipeline.config import load_config
from tandem.pipeline.runner import run
from tandem.schemas.exit_status import OK as EXIT_OK

ROWS = 3600
# Class 1 is the most frequent and class 2 the rarest, so TF Transform's frequency-ordered
# vocabulary (['1', '0', '2']) differs from the class ids, and from the sorted names.
NAMES = {0: "banane", 1: "kirsche", 2: "äpfel"}  # UTF-8 names: vocabularies are not ASCII-only


def _rows(seed=11):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    color = rng.choice(["rot", "grün", "blau"], size=ROWS)
    # Separable classes: 1 when x1 > -0.3 (most rows), else 0 when x2 > -0.6, else 2.
    cls = np.where(x1 > -0.3, 1, np.where(x2 > -0.6, 0, 2))
    amount = 150 + 40 * x1 + 25 * x2 + 30 * (color == "rot") + rng.normal(scale=5, size=ROWS)
    return x1, x2, color, cls, amount


def _write_dataset(root, label_name, labels):
    x1, x2, color, _, _ = _rows()
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "data.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["x1", "x2", "color", label_name])
        for row in zip(x1, x2, color, labels, strict=True):
            writer.writerow([f"{row[0]:.5f}", f"{row[1]:.5f}", row[2], row[3]])


def _pipeline(tmp, name, label, problem_type, labels, **extra):
    """Data, a minimal config, a proposed schema: what a new user writes."""
    data = tmp / name / "data"
    _write_dataset(str(data), label, labels)
    config = {
        "name": name,
        "data": {"location": str(data), "format": "csv", "pattern": "*.csv"},
        "label": label,
        "problem_type": problem_type,
        "schema": str(tmp / name / "schema.pbtxt"),
        "output_dir": str(tmp / name / "out"),
        "beam": {"direct_running_mode": "in_memory"},
        "model": {"epochs": 8},
        **extra,
    }
    path = tmp / name / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["schema", "propose", "--config", str(path), "--out", config["schema"]]) == 0
    return str(path)


def _run(path, *overrides, until=None):
    out = io.StringIO()
    result = run(load_config(path, list(overrides)), until=until, out=out)
    return result, out.getvalue()


def _eval_rows(result, label):
    """(raw label values, serialized examples without the label) of the eval split."""
    split = os.path.join(result.outputs["examples"].uri, "Split-eval")
    files = sorted(tf.io.gfile.glob(os.path.join(split, "*")))
    labels, examples = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(400):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature[label]
        kind = feature.WhichOneof("kind")
        value = getattr(feature, kind).value[0]
        labels.append(value.decode() if isinstance(value, bytes) else value)
        del example.features.feature[label]
        examples.append(example.SerializeToString())
    return labels, examples


def _evaluator_metric(result, name):
    import tensorflow_model_analysis as tfma

    for slice_metrics in tfma.load_metrics(result.outputs["evaluation"].uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.name == name and not kv.key.is_diff and kv.key.model_name != "baseline":
                return kv.value.double_value.value
    raise AssertionError(f"no {name} in the evaluation")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("tabular")


@pytest.mark.parametrize("kind", ["int", "string"])
def test_multiclass_scores_the_classes_the_evaluator_and_clients_mean(tmp, kind):
    _, _, _, cls, _ = _rows()
    labels = cls if kind == "int" else [NAMES[c] for c in cls]
    path = _pipeline(tmp, f"three_{kind}", "kind", "multiclass_classification", labels)
    result, text = _run(path)
    assert result.exit_code == EXIT_OK, text
    assert "Model blessed (sparse_categorical_accuracy" in text, text
    # The Evaluator compares the raw label with the argmax position: right only when the
    # served order is the class order.
    assert _evaluator_metric(result, "sparse_categorical_accuracy") > 0.9, text

    expected = ["0", "1", "2"] if kind == "int" else sorted(NAMES.values())
    assert load_record(result.pushed)["classes"] == expected
    raw_labels, examples = _eval_rows(result, "kind")
    out = tf.saved_model.load(result.pushed).signatures["serving_default"](
        examples=tf.constant(examples))
    served_classes = [c.decode() for c in out["classes"].numpy()[0]]
    assert served_classes == expected
    predicted = np.argmax(out["scores"].numpy(), axis=1)
    # A client reads scores[:, k] as class k (int labels) or as classes[k] (names).
    truth = [str(v) for v in raw_labels]
    hits = np.mean([served_classes[p] == t for p, t in zip(predicted, truth, strict=True)])
    assert hits > 0.9


def test_regression_on_a_label_far_from_zero_beats_the_mean(tmp):
    _, _, _, _, amount = _rows()
    # The amount is linear in the features: a deep model would not beat the linear baseline
    # (the Model 5 gate would stop the run), so the config asks for a linear model.
    path = _pipeline(tmp, "amount", "amount", "regression", [f"{a:.3f}" for a in amount],
                     evaluation={"metric": "rmse", "threshold": 30.0},
                     model={"epochs": 8, "hidden_units": []})
    result, text = _run(path)
    assert result.exit_code == EXIT_OK, text
    std = float(np.std(amount))  # what always predicting the mean scores
    rmse = _evaluator_metric(result, "root_mean_squared_error")
    assert rmse < 0.25 * std, (rmse, std)
    record = load_record(result.pushed)
    assert abs(record["eval_metrics"]["rmse"] - rmse) < 0.2 * rmse  # reported in label units
    _, examples = _eval_rows(result, "amount")
    served = tf.saved_model.load(result.pushed).signatures["serving_default"](
        examples=tf.constant(examples))["predictions"].numpy()
    assert abs(served.mean() - 150) < 15  # predictions in the label's own scale

    # A model-only change re-runs the Trainer but not Transform.
    again, text = _run(path, "model.epochs=2", until="train")
    lines = {line.split("]")[0].split("[")[-1]: line for line in text.splitlines()
             if "] finished" in line}
    assert lines["Transform"].endswith("(cached)"), text
    assert not lines["Trainer"].endswith("(cached)"), text
