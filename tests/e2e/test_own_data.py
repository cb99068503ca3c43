"""End-to-end: tandem on data of a user's own, with the minimal config (name, data, label,
problem type), a proposed schema and every gate on, as a newcomer runs it from a directory of
their own: the simplest adequate model ships, the Evaluator's default bar is the naive
predictor's, and the pushed model's metric, computed here independently, is the Evaluator's.

Synthetic data with a known truth decides which model must win: a linear truth ships the
linear model, an XOR truth the configured one, and pure noise is refused against the naive
predictor. scikit-learn's bundled datasets (iris, digits, diabetes) are small real ones."""

import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tandem.components.build_record import load_record
from tandem.pipeline.config import load_config
from tandem.pipeline.runner import latest_outputs, pushed_destination
from tests.conftest import library_log_lines


def _write(root, header, rows):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "data.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _tandem(cwd, *args, timeout=900):
    """The installed `tandem` command, as a user runs it from their own directory (whose
    schemas/ folder must not shadow anything of tandem's)."""
    command = os.path.join(os.path.dirname(sys.executable), "tandem")
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _user_run(tmp, name, header, rows, label, problem_type):
    """What a newcomer writes and runs, in a directory of their own: data/, a four-key
    config, `schema propose` (to the default schema path), then `run`."""
    home = tmp / name
    _write(str(home / "data"), header, rows)
    (home / "config.yaml").write_text(yaml.safe_dump({
        "name": name, "data": {"location": "data"}, "label": label,
        "problem_type": problem_type}))
    proposed = _tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
                       f"schemas/{name}/schema.pbtxt")
    assert proposed.returncode == 0, proposed.stderr
    _user_run.proposed = proposed.stdout
    done = _tandem(home, "run", "--config", "config.yaml")
    # The default Beam mode (auto) runs a small CSV in process, which halves the run's time;
    # the session run in conftest covers the worker processes large inputs get.
    assert done.stdout.splitlines()[0].endswith(", Beam in_memory"), done.stdout[:500]
    if done.returncode == 0:
        assert library_log_lines(done.stdout, done.stderr) == []
    cwd = os.getcwd()
    os.chdir(home)  # the config's relative paths are the user's
    try:
        config = load_config("config.yaml")
    finally:
        os.chdir(cwd)
    outputs = latest_outputs(config)
    return done, config, outputs


def _eval_split(outputs, label):
    """(labels, serialized examples without the label) of the whole eval split."""
    split = os.path.join(outputs["examples"].uri, "Split-eval")
    labels, examples = [], []
    for path in sorted(tf.io.gfile.glob(os.path.join(split, "*"))):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature[label]
            labels.append(getattr(feature, feature.WhichOneof("kind")).value[0])
            del example.features.feature[label]
            examples.append(example.SerializeToString())
    return np.array(labels), examples


def _evaluator_metric(outputs, name):
    from tandem.components.slice_gate import evaluation_metrics

    return evaluation_metrics(outputs["evaluation"].uri)[("", "candidate")][name]


def _served(pushed, examples, key):
    serve = tf.saved_model.load(pushed).signatures["serving_default"]
    return serve(examples=tf.constant(examples))[key].numpy()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("own")


def _binary(seed, truth):
    rng = np.random.default_rng(seed)
    n = 800
    x = rng.normal(size=(n, 4))
    if truth == "linear":
        y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]))))
    else:  # XOR of two signs: nothing linear in the features can express it
        y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)) ^ (rng.random(n) < 0.05)
    return [[f"{v:.5f}" for v in row] + [int(t)] for row, t in zip(x, y, strict=True)]


def _ordinary_columns(rows, seed):
    """What an ordinary CSV carries beside its signal: a customer id (unique per row), a
    column left empty, a date (hundreds of values, each on a few rows) and a number written
    "NA" where it is missing."""
    rng = np.random.default_rng(seed)
    return [[f"C{100000 + i}", "", f"2023-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
             "NA" if rng.random() < 0.05 else str(rng.integers(0, 60)), *row]
            for i, row in enumerate(rows)]


@pytest.mark.parametrize("truth,chosen", [("linear", "linear"), ("xor", "configured")])
def test_the_simplest_adequate_model_ships(tmp, truth, chosen):
    header, rows = ["a", "b", "c", "d", "y"], _binary(5, truth)
    if truth == "linear":  # the columns a CSV of a user's own carries besides its signal
        header, rows = ["customer_id", "notes", "signup_date", "tenure", *header], \
            _ordinary_columns(rows, 5)
    done, config, outputs = _user_run(tmp, truth, header, rows, "y", "binary_classification")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"[Trainer] chose {chosen}: configured " in done.stdout, done.stdout
    pushed = pushed_destination(outputs)
    record = load_record(pushed)
    selection = record["selection"]
    assert selection["chosen"] == chosen and selection["select"] == "simplest_adequate"
    gain = selection["configured"] - selection["linear"]
    if chosen == "configured":  # better beyond the error; the XOR truth is far beyond it
        assert gain > selection["margin"] > 0 and selection["linear"] < 0.7
        assert record["hyperparameters"]["hidden_units"]
    else:
        assert gain <= selection["margin"]
        assert record["hyperparameters"]["hidden_units"] == [] and \
            record["hyperparameters"]["crosses"] == []
    if truth == "linear":
        # The id and the empty column are not model inputs, and `schema propose` said so;
        # the date is read through its vocabulary, an open one, which the rules accept.
        assert ("not model inputs unless the config's features name a kind: customer_id (an "
                "identifier)\nnot model inputs: notes (lifecycle stage DISABLED); a column with "
                "no values in the data is disabled") in _user_run.proposed
        # A number written "NA" where missing is read as text: propose says so and how.
        assert ("note: tenure holds numbers but for 'NA', so it is read as text (categories); "
                "write its missing cells empty") in _user_run.proposed
        kinds = {n: f["kind"] for n, f in record["transform"]["features"].items()}
        assert kinds == {"customer_id": "skip", "notes": "skip", "signup_date": "categorical",
                         "tenure": "categorical", **{n: "numeric" for n in "abcd"}}, kinds
        rules = {c["check"]: c for c in record["checks"]}["feature_rules"]
        assert rules["passed"] and rules["open_vocabularies"] == ["signup_date"], rules
    checks = {c["check"]: c for c in record["checks"]}
    assert checks["baseline"]["passed"] and checks["baseline"]["chosen"] == chosen
    # The default bar named the naive predictor, and the pushed model's AUC, computed here,
    # is the Evaluator's.
    assert "the naive predictor, a constant score (AUC 0.5), scores 0.5000" in done.stdout
    from sklearn.metrics import roc_auc_score

    labels, examples = _eval_split(outputs, "y")
    auc = roc_auc_score(labels, _served(pushed, examples, "probabilities"))
    assert auc == pytest.approx(_evaluator_metric(outputs, "auc"), abs=2e-3)
    assert auc > record["naive"]["bar"]


def test_noise_is_refused_against_the_naive_predictor(tmp):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(600, 4))
    target = rng.normal(loc=50, scale=10, size=600)
    rows = [[f"{v:.5f}" for v in r] + [f"{t:.3f}"] for r, t in zip(x, target, strict=True)]
    done, config, outputs = _user_run(tmp, "noise", ["a", "b", "c", "d", "y"], rows, "y",
                                      "regression")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Model NOT blessed (root_mean_squared_error" in done.stdout
    naive = load_record(outputs["model"].uri)["naive"]
    assert f"bar {naive['bar']:.4f}: the naive predictor, the training mean" in done.stdout
    assert "failed: root_mean_squared_error value" in done.stdout
    bound = float(done.stdout.split("upper_bound { value: ")[1].split()[0])
    assert bound == pytest.approx(naive["bar"], rel=1e-6)  # TFMA judged the naive bar
    assert pushed_destination(outputs) is None
    assert not os.path.exists(config.push_dir) or not os.listdir(config.push_dir)
    # The refused model really is no better than the training mean beyond the error.
    labels, examples = _eval_split(outputs, "y")
    served = _served(os.path.join(outputs["model"].uri, "Format-Serving"), examples,
                     "predictions")
    rmse = float(np.sqrt(np.mean((served - labels) ** 2)))
    assert rmse == pytest.approx(_evaluator_metric(outputs, "root_mean_squared_error"),
                                 rel=1e-4)
    assert rmse > naive["bar"]
    # The Trainer's choice was made in the label's units: its score of the exported model is
    # the Evaluator's RMSE on the same eval split.
    selection = load_record(outputs["model"].uri)["selection"]
    assert selection[selection["chosen"]] == pytest.approx(rmse, rel=1e-3)


def _sklearn_rows(frame, label):
    header = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in frame.columns]
    rows = frame.to_numpy().tolist()
    return header, rows, header[list(frame.columns).index(label)]


@pytest.mark.parametrize("dataset", ["iris", "digits"])
def test_small_real_classification_datasets_are_pushed(tmp, dataset):
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{dataset}")(as_frame=True)
    frame = loaded.frame
    header, rows, label = _sklearn_rows(frame, "target")
    rows = [[*r[:-1], int(r[-1])] for r in rows]
    done, config, outputs = _user_run(tmp, dataset, header, rows, label,
                                      "multiclass_classification")
    assert done.returncode == 0, done.stdout + done.stderr
    pushed = pushed_destination(outputs)
    assert pushed and "Model blessed (sparse_categorical_accuracy" in done.stdout
    record = load_record(pushed)
    assert record["classes"] == [str(c) for c in range(len(loaded.target_names))]
    labels, examples = _eval_split(outputs, label)
    scores = _served(pushed, examples, "scores")
    accuracy = float(np.mean(np.argmax(scores, axis=1) == labels))
    assert accuracy == pytest.approx(
        _evaluator_metric(outputs, "sparse_categorical_accuracy"), abs=1e-6)
    assert accuracy > record["naive"]["bar"] > record["naive"]["score"]


def test_a_small_real_regression_dataset_is_pushed(tmp):
    from sklearn import datasets

    # Disease progression a year on from ten baseline measures (442 patients). linnerud's 20
    # rows leave 3 for the eval split, where whether a model clears the naive bar depends on
    # float rounding in its training (docs/limitations.md).
    frame = datasets.load_diabetes(as_frame=True).frame
    header, rows, label = _sklearn_rows(frame, "target")
    done, config, outputs = _user_run(tmp, "diabetes", header, rows, label, "regression")
    assert done.returncode == 0, done.stdout + done.stderr
    pushed = pushed_destination(outputs)
    assert pushed and "Model blessed (root_mean_squared_error" in done.stdout
    labels, examples = _eval_split(outputs, label)
    served = _served(pushed, examples, "predictions")
    rmse = float(np.sqrt(np.mean((served - labels) ** 2)))
    assert rmse == pytest.approx(_evaluator_metric(outputs, "root_mean_squared_error"),
                                 rel=1e-4)
    record = load_record(pushed)
    assert rmse < record["naive"]["bar"]
    assert record["selection"][record["selection"]["chosen"]] == pytest.approx(rmse, rel=1e-3)


def test_a_regression_dataset_too_small_to_judge_asks_for_a_threshold(tmp):
    """linnerud's 20 rows leave 3 for the eval split: the training mean's RMSE there has an
    error (Student's t, 2 degrees of freedom) wider than the RMSE itself, so no model could
    be shown better than it; the run says so and asks for a bar, whatever the model scored."""
    from sklearn import datasets

    frame = datasets.load_linnerud(as_frame=True).frame
    header, rows, label = _sklearn_rows(frame, "Waist")
    done, config, outputs = _user_run(tmp, "linnerud", header, rows, label, "regression")
    assert done.returncode == 2, done.stdout + done.stderr
    assert pushed_destination(outputs) is None
    line = done.stderr.strip().splitlines()[-1]
    assert re.search(r"the eval split is too small \(n=3\): the naive predictor's rmse "
                     r"[\d.]+ ± [\d.]+ reaches 0.*set evaluation\.threshold", line), line


def test_a_bad_select_value_is_one_line_and_exit_2(tmp):
    home = tmp / "bad"
    _write(str(home / "data"), ["a", "y"], [[1.0, 0], [2.0, 1]])
    (home / "config.yaml").write_text(yaml.safe_dump({
        "name": "bad", "data": {"location": "data"}, "label": "y",
        "problem_type": "binary_classification", "model": {"select": "best"}}))
    done = _tandem(home, "run", "--config", "config.yaml")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert ("key 'model.select' in pipeline config: expected one of simplest_adequate, "
            "configured, got 'best'") in done.stderr
    # With the key right, a missing schema says how to make one.
    (home / "config.yaml").write_text(yaml.safe_dump({
        "name": "bad", "data": {"location": "data"}, "label": "y",
        "problem_type": "binary_classification"}))
    done = _tandem(home, "run", "--config", "config.yaml")
    assert done.returncode == 2 and "tandem schema propose --config" in done.stderr
