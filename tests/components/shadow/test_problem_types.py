"""Shadow replay of a binary, a multi-class and a regression model on labelled traffic: what
it reports for each, checked against counts made here, and the quality gate failing a B that
is really worse than A, naming the metric, and passing a B that equals A."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tandem.components.shadow.compare import Thresholds
from tandem.components.shadow.replay import ReplayConfig, summary
from tandem.pipeline.datasets import listening
from tandem.pipeline.traffic_checks import run_replay
from tests.components.shadow.conftest import (
    render_failed_report,
    request_ids,
    served_examples,
    write_log,
)
from tests.serving.gateway.conftest import PARSE

pytestmark = pytest.mark.xdist_group("replay")

DAYPARTS = ("night", "day", "evening")  # the multi-class label: hour_of_day // 8


class _Scorer(tf.Module):
    """A listening model of one kind, answering as tandem's trainer exports: `probabilities`
    and `scores` (binary), `scores` [n, 3] and `classes` (multi-class), `predictions`
    (regression). A follows the rule the test's labels are drawn from; B (`worse`) does not:
    its age weight has the wrong sign (binary), its dayparts start four hours late
    (multi-class), it answers a minute long (regression)."""

    def __init__(self, kind: str, worse: bool):
        super().__init__()
        self.kind, self.worse = kind, worse

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        f = tf.io.parse_example(examples, PARSE)
        age = tf.cast(f["age"][:, 0], tf.float32)
        minutes = f["duration_s"][:, 0] / 60.0
        hour = tf.cast(f["hour_of_day"][:, 0], tf.float32)
        if self.kind == "binary":
            p = tf.sigmoid((-0.03 if self.worse else 0.03) * (age - 34.0)
                           + 0.24 * (minutes - 3.7))
            return {"probabilities": p, "scores": tf.stack([1 - p, p], axis=1)}
        if self.kind == "multiclass":
            centres = tf.constant([3.5, 11.5, 19.5]) + (4.0 if self.worse else 0.0)
            scores = tf.nn.softmax(-((hour[:, None] - centres[None, :]) / 4.0) ** 2)
            names = tf.tile(tf.constant([DAYPARTS]), [tf.shape(scores)[0], 1])
            return {"scores": scores, "classes": names}
        return {"predictions": minutes + (1.0 if self.worse else 0.0)}


def _labels(kind: str, served: list[bytes]) -> np.ndarray:
    """The labels A is right about, mostly: its own rule plus noise."""
    rng = np.random.default_rng(5)
    f = [tf.train.Example.FromString(d).features.feature for d in served]
    age = np.array([x["age"].int64_list.value[0] for x in f], float)
    minutes = np.array([x["duration_s"].float_list.value[0] for x in f]) / 60.0
    hour = np.array([x["hour_of_day"].int64_list.value[0] for x in f])
    if kind == "binary":
        logit = 0.03 * (age - 34.0) + 0.24 * (minutes - 3.7)
        return (logit + rng.normal(0.0, 0.2, len(f)) > 0).astype(int)
    if kind == "multiclass":
        y = hour // 8
        noisy = rng.random(len(f)) < 0.1
        y[noisy] = rng.integers(0, 3, noisy.sum())
        return y
    return minutes + rng.normal(0.0, 0.5, len(f))


@dataclasses.dataclass
class Problem:
    a: str  # model A's base directory (version 1 under it), which served the log
    b: str  # model B, worse than A on the labels
    logs: str
    served: list
    ids: list
    y: np.ndarray  # the label of every served example


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """kind -> Problem, made on first use: 1,200 listening examples, A and B of that kind, and
    a log of A's answers."""
    root = tmp_path_factory.mktemp("problem-types")
    listening.generate(str(root / "data"), 1200, seed=3)
    served = served_examples(root / "data")
    made = {}

    def problem(kind: str) -> Problem:
        if kind not in made:
            for name, worse in (("a", False), ("b", True)):
                module = _Scorer(kind, worse)
                tf.saved_model.save(module, str(root / kind / name / "1"), signatures={
                    "serving_default": module.serve.get_concrete_function()})
            write_log(str(root / kind / "a" / "1"), served, str(root / kind / "logs"))
            made[kind] = Problem(str(root / kind / "a"), str(root / kind / "b"),
                                 str(root / kind / "logs"), served, request_ids(served),
                                 _labels(kind, served))
        return made[kind]
    return problem


def _write_labels(path, ids, y) -> str:
    with open(path, "w") as out:
        out.write("request_id,label\n")
        out.writelines(f"{rid},{value}\n" for rid, value in zip(ids, y, strict=True))
    return str(path)


def _outputs(model_dir: str, served: list[bytes], key: str) -> np.ndarray:
    fn = tf.saved_model.load(os.path.join(model_dir, "1")).signatures["serving_default"]
    return fn(examples=tf.constant(served))[key].numpy().astype(np.float64)


@pytest.mark.slow
def test_multiclass_flips_flip_matrix_and_quality_match_counts_made_here(problems, tmp_path):
    from sklearn.metrics import log_loss

    p = problems("multiclass")
    # Labels for all but the last 100 requests; two of them are not a class position.
    y = p.y[:-100].astype(float)
    y[:2] = (3, 0.5)
    labels = _write_labels(tmp_path / "labels.csv", p.ids[:-100], y)
    report = run_replay(p.logs, p.a, p.b, str(tmp_path / "out"),
                        ReplayConfig(slices=[["device"]]), labels=labels)
    a, b = (_outputs(m, p.served, "scores") for m in (p.a, p.b))
    ca, cb = a.argmax(axis=1), b.argmax(axis=1)
    overall = report["overall"]
    assert overall["symmetric_flip_rate"]["value"] == pytest.approx(np.mean(ca != cb), abs=1e-6)
    assert "pos_to_neg_flip_rate" not in overall  # a binary model's notion
    matrix = overall["flip_matrix"]
    assert matrix["classes"] == list(DAYPARTS)  # from the models' `classes` output
    assert matrix["counts"] == [[int(np.sum((ca == i) & (cb == j))) for j in range(3)]
                                for i in range(3)]
    assert np.trace(matrix["counts"]) < len(p.served)  # B moves requests between classes
    assert overall["abs_delta"]["max"] == pytest.approx(np.abs(b - a).max(), abs=1e-6)
    assert overall["mean_score"]["b"] == pytest.approx(b.mean(axis=0), abs=1e-6)  # per class
    for group in report["slices"]["device"].values():
        assert np.sum(group["flip_matrix"]["counts"]) == group["symmetric_flip_rate"]["n"]

    q = report["quality"]
    assert (q["matched"], q["unmatched"], q["unknown_class"]) == (1100, 100, 2)
    m = q["metrics"]
    assert m["n"] == 1098
    scored, a, b = p.y[2:-100], a[2:-100], b[2:-100]
    for model, scores in (("a", a), ("b", b)):
        assert m["accuracy"][model]["value"] == pytest.approx(
            np.mean(scores.argmax(axis=1) == scored), abs=1e-6)
        assert m["log_loss"][model]["value"] == pytest.approx(
            log_loss(scored, scores, labels=[0, 1, 2]), abs=1e-5)
    for name in ("accuracy", "log_loss"):
        diff = m[name]["b_minus_a"]
        assert diff["value"] == pytest.approx(m[name]["b"]["value"] - m[name]["a"]["value"],
                                              abs=2e-6)
        assert diff["low"] <= diff["value"] <= diff["high"]
    checks = {c["check"]: c for c in report["verdict"]["checks"]}
    assert checks["classes: B's, in order, are A's"]["passed"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Flip matrix" in page and "log_loss (lower is better)" in page
    assert "Mean score per class, A → B: night" in page
    assert "2 of them are not a class position" in page


def test_regression_deltas_and_quality_match_computations_made_here(problems, tmp_path):
    p = problems("regression")
    labels = _write_labels(tmp_path / "labels.csv", p.ids, p.y)
    report = run_replay(p.logs, p.a, p.b, str(tmp_path / "out"), labels=labels)
    assert report["problem"] == "regression"
    a, b = (_outputs(m, p.served, "predictions") for m in (p.a, p.b))
    overall = report["overall"]
    delta = np.abs(b - a)
    assert overall["abs_delta"]["p50"]["value"] == pytest.approx(np.percentile(delta, 50),
                                                                 abs=1e-5)
    assert overall["relative_delta"]["p90"]["value"] == pytest.approx(
        np.percentile(delta / np.abs(a), 90), abs=1e-5)
    m = report["quality"]["metrics"]
    assert "unknown_class" not in report["quality"]
    for model, pred in (("a", a), ("b", b)):
        assert m["rmse"][model]["value"] == pytest.approx(
            np.sqrt(np.mean((pred - p.y) ** 2)), abs=1e-5)
        assert m["mae"][model]["value"] == pytest.approx(np.mean(np.abs(pred - p.y)), abs=1e-5)
    for name in ("rmse", "mae"):
        diff = m[name]["b_minus_a"]
        assert diff["low"] <= diff["value"] <= diff["high"]


# Only the quality gate is under test: the flip rate and |delta| limits let any difference
# through, so whatever fails was decided by quality.
QUALITY_ONLY = Thresholds(max_quality_drop=0.02, max_flip_rate=1.0, max_p99_abs_delta=100.0)
# The checks that must fail for a worse B, and the side of zero its B - A lies on.
WORSE = {
    "binary": {"auc B - A (95% lower bound)": "below",
               "accuracy B - A (95% lower bound)": "below"},
    "multiclass": {"accuracy B - A (95% lower bound)": "below",
                   "log_loss B - A (95% upper bound)": "above"},
    "regression": {"rmse B - A (95% upper bound)": "above",
                   "mae B - A (95% upper bound)": "above"},
}


def _quality_replay(p, tmp_path, worse: bool) -> dict:
    """The labelled replay judged on quality alone: B against A, or A against itself."""
    labels = _write_labels(tmp_path / "labels.csv", p.ids, p.y)
    return run_replay(p.logs, p.a, p.b if worse else p.a, str(tmp_path / "out"),
                      ReplayConfig(thresholds=QUALITY_ONLY), labels=labels)


@pytest.mark.parametrize("kind", sorted(WORSE))
def test_quality_gate_fails_a_worse_candidate_naming_the_metric(problems, tmp_path, kind):
    report = _quality_replay(problems(kind), tmp_path, worse=True)
    failed = {c["check"] for c in report["verdict"]["checks"] if not c["passed"]}
    assert failed == set(WORSE[kind]), report["verdict"]
    assert not report["verdict"]["passed"]
    lines = summary(report)
    for check, side in WORSE[kind].items():
        assert any(line.startswith(f"  [FAIL] {check}:") for line in lines), lines
        # Really worse: the whole interval of B - A is on the worse side of zero.
        diff = report["quality"]["metrics"][check.split()[0]]["b_minus_a"]
        assert diff["high"] < 0 if side == "below" else diff["low"] > 0, diff


@pytest.mark.parametrize("kind", sorted(WORSE))
def test_quality_gate_passes_a_candidate_equal_to_the_baseline(problems, tmp_path, kind):
    report = _quality_replay(problems(kind), tmp_path, worse=False)
    checks = {c["check"]: c for c in report["verdict"]["checks"]}
    assert report["verdict"]["passed"], report["verdict"]
    for check in WORSE[kind]:
        assert checks[check]["passed"] and checks[check]["value"] == 0.0


def test_multiclass_report_renders_in_chromium_with_its_flip_matrix(problems, tmp_path):
    p = problems("multiclass")
    labels = _write_labels(tmp_path / "labels.csv", p.ids, p.y)
    run_replay(p.logs, p.a, p.b, str(tmp_path / "out"), ReplayConfig(slices=[["device"]]),
               labels=labels)
    # |B - A| (the largest move of any class's score) and flip rate by device: a binary
    # model's score charts have no meaning for three scores.
    render_failed_report(tmp_path / "out", figures=2)
    text = (tmp_path / "out" / "report.html").read_text()
    for name in DAYPARTS:
        assert f"<th>{name}</th>" in text
    for row in ("accuracy", "log_loss (lower is better)"):
        assert f"<td>{row}</td>" in text


def test_class_names_come_from_the_build_record_when_the_model_does_not_answer_them(tmp_path):
    from tandem.components import build_record
    from tandem.components.shadow.report import _class_names

    build_record.write(str(tmp_path / "1"), {"classes": list(DAYPARTS)})
    assert _class_names(None, str(tmp_path / "1")) == list(DAYPARTS)
    assert _class_names(["x", "y", "z"], str(tmp_path / "1")) == ["x", "y", "z"]  # answered
    assert _class_names(None, str(tmp_path / "none")) is None


def test_multiclass_labels_written_as_class_names_score_as_their_positions(problems, tmp_path):
    """A user's labels file holds the class names the model answers with ("night"), as a
    string label's CSV does; they score exactly as the positions do, and a name the model
    does not know is an unknown class."""
    p = problems("multiclass")
    y = p.y[:-100]
    positions = _write_labels(tmp_path / "positions.csv", p.ids[:-100], y)
    names = [DAYPARTS[k] for k in y]
    names[0] = "brunch"
    named = _write_labels(tmp_path / "names.csv", p.ids[:-100], names)
    by_position = run_replay(p.logs, p.a, p.b, str(tmp_path / "p"), labels=positions)
    by_name = run_replay(p.logs, p.a, p.b, str(tmp_path / "n"), labels=named)
    q, qp = by_name["quality"], by_position["quality"]
    assert (q["matched"], q["unknown_class"], qp["unknown_class"]) == (1100, 1, 0)
    assert q["metrics"]["n"] == qp["metrics"]["n"] - 1 == 1099
    a = _outputs(p.a, p.served, "scores")[1:-100]
    assert q["metrics"]["accuracy"]["a"]["value"] == pytest.approx(
        np.mean(a.argmax(axis=1) == y[1:]), abs=1e-6)


def test_a_binary_models_labels_written_as_its_class_names_are_scored(problems, tmp_path):
    """A binary model trained on text labels ("no", "yes") names its classes in its build
    record, in the served order (its probability is of the second); labels that arrive as
    those names score exactly as 0 and 1 do, and a name it does not know is an unknown
    class. Without class names, text labels are refused, naming the first one."""
    import shutil

    from tandem.components import build_record

    p = problems("binary")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for source, model in ((p.a, a), (p.b, b)):
        shutil.copytree(source, model)
        build_record.write(os.path.join(model, "1"), {
            "problem_type": "binary_classification", "classes": ["no", "yes"]})
    from sklearn.metrics import roc_auc_score

    y = p.y[:-100]
    names = ["yes" if v == 1 else "no" for v in y]
    names[0] = "maybe"
    named = _write_labels(tmp_path / "names.csv", p.ids[:-100], names)
    by_name = run_replay(p.logs, a, b, str(tmp_path / "names"), labels=named)
    q = by_name["quality"]
    assert (q["matched"], q["unknown_class"], q["metrics"]["n"]) == (1100, 1, 1099)
    for model, path in (("a", p.a), ("b", p.b)):
        probabilities = _outputs(path, p.served, "probabilities")[1:-100]
        assert q["metrics"]["auc"][model]["value"] == pytest.approx(
            roc_auc_score(y[1:], probabilities), abs=1e-6)
    assert "1 label(s) not a class position" in "\n".join(summary(by_name))
    with pytest.raises(Exception, match=r"names\.csv:2: label 'maybe' is not a number \(the "
                                        r"model names no classes"):
        run_replay(p.logs, p.a, p.b, str(tmp_path / "none"), labels=named)
