"""Shadow replay: logged traffic through models A and B, compared prediction by prediction."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tandem.components.shadow.replay import ReplayConfig, ReplayError
from tandem.pipeline.datasets import listening
from tandem.pipeline.traffic_checks import run_replay
from tandem.schemas.request_log import LogWriter, frame
from tests.components.shadow.conftest import render_failed_report, served_examples, write_log
from tests.conftest import tandem
from tests.serving.gateway.conftest import make_listening_model, training_examples

pytestmark = pytest.mark.xdist_group("replay")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Decorated listening examples, models A (v1), A again (v2), B (perturbed bias), and a
    log of A's answers written with the shared writer, 8 examples a request."""
    root = tmp_path_factory.mktemp("replay")
    listening.generate(str(root / "data"), 1200, seed=3)
    served = served_examples(root / "data")
    for name, bias in (("a", 0.0), ("b", 0.3)):
        os.makedirs(root / name)
        make_listening_model(str(root / name), 1, bias)
    write_log(str(root / "a" / "1"), served, str(root / "logs"))
    return root, served


def _probabilities(model_dir, served):
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    return fn(examples=tf.constant(served))["probabilities"].numpy()


@pytest.mark.slow
def test_b_equal_to_a_gives_zero_flips_exact_parity_and_a_reproducible_report(setup, tmp_path):
    root, served = setup
    config = ReplayConfig(slices=[["country"]])
    report = run_replay(str(root / "logs"), str(root / "a"), str(root / "a"),
                        str(tmp_path / "one"), config)
    assert report["input"]["replayed_examples"] == len(served)
    assert report["parity"]["max_abs_diff"] <= 1e-6 and report["parity"]["mismatched"] == 0
    assert report["overall"]["symmetric_flip_rate"]["value"] == 0.0
    assert report["overall"]["abs_delta"]["max"] == 0.0
    assert report["verdict"]["passed"]
    assert "US" in report["slices"]["country"]
    run_replay(str(root / "logs"), str(root / "a"), str(root / "a"), str(tmp_path / "two"),
               config)
    assert (tmp_path / "one" / "report.json").read_bytes() == \
        (tmp_path / "two" / "report.json").read_bytes()


def test_flip_rate_of_a_perturbed_b_matches_an_independent_count(setup, tmp_path):
    root, served = setup
    report = run_replay(str(root / "logs"), str(root / "a"), str(root / "b"), str(tmp_path))
    a = _probabilities(str(root / "a" / "1"), served)
    b = _probabilities(str(root / "b" / "1"), served)
    flips = np.mean((a >= 0.5) != (b >= 0.5))
    assert flips > 0.05  # the perturbation matters
    overall = report["overall"]
    assert overall["symmetric_flip_rate"]["value"] == pytest.approx(flips, abs=1e-6)
    assert overall["neg_to_pos_flip_rate"]["value"] == pytest.approx(
        np.mean((a < 0.5) & (b >= 0.5)), abs=1e-6)
    assert overall["symmetric_flip_rate"]["low"] <= flips <= overall["symmetric_flip_rate"]["high"]
    assert overall["mean_score"]["b"] > overall["mean_score"]["a"]
    assert not report["verdict"]["passed"]
    assert any(c["check"].startswith("symmetric_flip_rate") and not c["passed"]
               for c in report["verdict"]["checks"])
    divergent = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        str(tmp_path / "divergent.tfrecord.gz"), compression_type="GZIP")]
    assert len(divergent) == 20
    top = divergent[0].features.feature["shadow_abs_delta"].float_list.value[0]
    assert top == pytest.approx(np.max(np.abs(b - a)), abs=1e-6)


def test_tampered_logged_answers_fail_the_parity_check(setup, tmp_path):
    from tandem.schemas.request_log import read_records

    root, _ = setup
    tampered = LogWriter(str(tmp_path / "logs"))
    for n, record in enumerate(read_records(str(root / "logs"))):
        if n % 10 == 0:
            probs = record.log.predict_log.response.outputs["probabilities"]
            values = tf.make_ndarray(probs) + 0.05
            probs.CopyFrom(tf.make_tensor_proto(values))
        tampered.write(record.log.SerializeToString())
    tampered.close()
    report = run_replay(str(tmp_path / "logs"), str(root / "a"), str(root / "a"),
                        str(tmp_path / "out"))
    assert report["parity"]["mismatched"] == 8 * 15  # 15 of 150 requests, 8 examples each
    assert not report["verdict"]["passed"]


def test_malformed_and_torn_records_are_skipped_and_counted(setup, tmp_path):
    import shutil
    import zlib

    root, served = setup
    logs = tmp_path / "logs"
    shutil.copytree(root / "logs", logs)
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(logs / "damaged.tfrecord.gz", "wb") as f:
        f.write(c.compress(frame(b"\x0a\xff not a PredictionLog") + frame(b"x" * 50)[:30])
                + c.flush(zlib.Z_SYNC_FLUSH))
    report = run_replay(str(logs), str(root / "a"), str(root / "a"), str(tmp_path / "out"))
    assert report["input"]["unreadable"] == 1 and report["input"]["torn"] == 1
    assert report["input"]["replayed_examples"] == len(served)


def _again(record, later_s: int, tamper: float = 0.0, rename: bool = False) -> bytes:
    """A logged request written once more, `later_s` after it, its logged answers moved by
    `tamper`; with `rename`, under new ids (then it is not a repeat but more traffic)."""
    import json

    from tandem.schemas.request_log import META_PREFIX

    log = type(record.log).FromString(record.log.SerializeToString())
    log.log_metadata.timestamp_secs += later_s
    if tamper:
        probs = log.predict_log.response.outputs["probabilities"]
        probs.CopyFrom(tf.make_tensor_proto(tf.make_ndarray(probs) + tamper))
    if rename:
        fields = json.loads(log.log_metadata.request_origin[len(META_PREFIX):])
        fields["id"] += "-again"
        fields["ids"] = [i + "-again" for i in fields["ids"]]
        log.log_metadata.request_origin = META_PREFIX + json.dumps(fields)
    return log.SerializeToString()


@pytest.mark.slow
def test_a_request_logged_twice_is_replayed_once_at_its_first_logged_occurrence(setup,
                                                                                 tmp_path):
    """The loop's old mirror step: requests already logged, sent and logged again."""
    import shutil

    from tandem.components.shadow.replay import summary
    from tandem.schemas.request_log import read_records, write_records

    root, served = setup
    records = list(read_records(str(root / "logs")))
    for name, kw in (("repeated", {"tamper": 0.05}), ("renamed", {"rename": True})):
        shutil.copytree(root / "logs", tmp_path / name)
        # A minute later, in a file whose name sorts before the first log's: time decides.
        write_records(str(tmp_path / name / "0-again.tfrecord.gz"),
                      [_again(r, later_s=60, **kw) for r in records])
    config = ReplayConfig(top_n=40)
    report = run_replay(str(tmp_path / "repeated"), str(root / "a"), str(root / "b"),
                        str(tmp_path / "out"), config)
    i = report["input"]
    assert i["records"] == 2 * len(records)
    assert i["replayed_examples"] == len(served) and i["duplicate_examples"] == len(served)
    # The repeats' logged answers were moved: had one been kept, parity would see it.
    assert report["parity"]["mismatched"] == 0
    flips = report["overall"]["symmetric_flip_rate"]
    assert flips["n"] == len(served)
    divergent = [tf.train.Example.FromString(r.numpy()).features.feature["shadow_request_id"]
                 .bytes_list.value[0] for r in tf.data.TFRecordDataset(
                     str(tmp_path / "out" / "divergent.tfrecord.gz"), compression_type="GZIP")]
    assert len(divergent) == 40 and len(set(divergent)) == 40
    assert f"{len(served):,} duplicate examples" in summary(report)[0]
    assert "repeat an id logged before" in (tmp_path / "out" / "report.html").read_text()
    # Counted twice (as the repeats are when they carry new ids), the same flip rate came
    # with an interval about 1/sqrt(2) as wide: too sure of itself.
    twice = run_replay(str(tmp_path / "renamed"), str(root / "a"), str(root / "b"),
                       str(tmp_path / "twice"), config)
    assert twice["input"]["duplicate_examples"] == 0
    counted = twice["overall"]["symmetric_flip_rate"]
    assert counted["n"] == 2 * len(served) and counted["value"] == flips["value"]
    widening = (flips["high"] - flips["low"]) / (counted["high"] - counted["low"])
    assert 1.2 < widening < 1.7, widening


def test_a_log_from_another_version_or_no_log_is_refused(setup, tmp_path):
    root, _ = setup
    os.makedirs(tmp_path / "a2")
    make_listening_model(str(tmp_path / "a2"), 2)
    with pytest.raises(ReplayError, match="version 1, but the baseline given is version 2"):
        run_replay(str(root / "logs"), str(tmp_path / "a2"), str(root / "b"), str(tmp_path))
    with pytest.raises(ReplayError, match="no request-log files match"):
        run_replay(str(tmp_path / "none-*.gz"), str(root / "a"), str(root / "b"), str(tmp_path))
    with pytest.raises(ReplayError, match="is not a SavedModel"):
        run_replay(str(root / "logs"), str(tmp_path), str(root / "b"), str(tmp_path))


@pytest.mark.slow
def test_cli_exit_status_follows_the_verdict(setup, tmp_path):
    root, _ = setup
    common = ["shadow", "replay", "--logs", str(root / "logs"), "--baseline", str(root / "a")]
    passed = tandem(*common, "--candidate", str(root / "a"), "--out", str(tmp_path / "p"))
    assert passed.returncode == 0, passed.stderr
    assert "PASSED" in passed.stdout and "symmetric_flip_rate" in passed.stdout
    assert passed.stderr == ""
    failed = tandem(*common, "--candidate", str(root / "b"), "--out", str(tmp_path / "f"))
    assert failed.returncode == 1 and "FAIL" in failed.stdout
    loose = tandem(*common, "--candidate", str(root / "b"), "--out", str(tmp_path / "l"),
                   "--set", "thresholds.max_flip_rate=0.9", "--set",
                   "thresholds.max_p99_abs_delta=0.9")
    assert loose.returncode == 0, loose.stdout
    bad = tandem(*common, "--candidate", str(tmp_path), "--out", str(tmp_path / "b"))
    assert bad.returncode == 2 and "is not a SavedModel" in bad.stderr


def test_a_limit_set_to_null_is_reported_not_gated(setup, tmp_path):
    """thresholds.max_p99_abs_delta: null leaves p99 |B - A| out of the gate (still in the
    report); the flip limit still fails B; a number where a limit goes is refused."""
    from tandem.components.shadow.replay import load_replay_config

    root, _ = setup
    config = load_replay_config(None, ["thresholds.max_p99_abs_delta=null"])
    assert config.thresholds.max_p99_abs_delta is None
    report = run_replay(str(root / "logs"), str(root / "a"), str(root / "b"),
                        str(tmp_path / "out"), config)
    checks = {c["check"]: c for c in report["verdict"]["checks"]}
    assert "p99 |delta| (95% upper bound)" not in checks
    assert report["overall"]["abs_delta"]["p99"]["high"] > 0.05  # B moves: it is reported
    assert not checks["symmetric_flip_rate (95% upper bound)"]["passed"]
    assert not report["verdict"]["passed"]
    with pytest.raises(ReplayError, match="key 'thresholds.parity_tolerance' in replay "
                                         "config: expected a number, got None$"):
        load_replay_config(None, ["thresholds.parity_tolerance=null"])


@pytest.mark.parametrize("candidate,blessed", [("a", 1), ("b", 0)])
def test_shadow_validator_blessing_follows_the_verdict(setup, tmp_path, candidate, blessed):
    """The TFX executor, called as TFX calls it, with Model and Examples artifacts."""
    from tfx.types import standard_artifacts

    from tandem.components.shadow_validator.executor import BLESSED, NOT_BLESSED, Executor

    root, _ = setup

    def model(artifact_dir, source):
        artifact = standard_artifacts.Model()
        artifact.uri = str(tmp_path / artifact_dir)
        os.makedirs(tmp_path / artifact_dir)
        os.symlink(root / source / "1", tmp_path / artifact_dir / "Format-Serving")
        return artifact

    logs = standard_artifacts.Examples()
    logs.uri = str(root / "logs")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    Executor().Do({"baseline_model": [model("baseline", "a")],
                   "candidate_model": [model("candidate", candidate)],
                   "request_logs": [logs]}, {"blessing": [blessing]},
                  {"config": '{"slices": [["device"]]}'})
    assert blessing.get_int_custom_property("blessed") == blessed
    expected = BLESSED if blessed else NOT_BLESSED
    assert os.listdir(blessing.uri).count(expected) == 1
    assert (NOT_BLESSED if blessed else BLESSED) not in os.listdir(blessing.uri)


def test_shadow_validator_is_a_tfx_component_with_a_blessing_output():
    from tfx.types import Channel, standard_artifacts

    from tandem.components.shadow_validator.component import ShadowValidator

    component = ShadowValidator(
        baseline_model=Channel(type=standard_artifacts.Model),
        candidate_model=Channel(type=standard_artifacts.Model),
        request_logs=Channel(type=standard_artifacts.Examples),
        config='{"thresholds": {"max_flip_rate": 0.02}}')
    assert component.outputs["blessing"].type == standard_artifacts.ModelBlessing
    assert set(component.inputs) == {"baseline_model", "candidate_model", "request_logs"}
    assert component.exec_properties["config"] == '{"thresholds": {"max_flip_rate": 0.02}}'


class _RenamedVocabulary(tf.Module):
    """Model A's arithmetic, but country is looked up in a vocabulary where 'US' became
    'USA': US traffic falls into the out-of-vocabulary bucket, as after a vocabulary change."""

    def __init__(self):
        super().__init__()
        from tests.serving.gateway.conftest import ListeningScorer

        self.inner = ListeningScorer(0.0)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(["USA", "GB", "DE"]), tf.constant([0.3, 0.0, 0.0])), default_value=0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        from tests.serving.gateway.conftest import PARSE

        f = tf.io.parse_example(examples, PARSE)
        logit = (0.03 * tf.cast(f["age"][:, 0] - 40, tf.float32)
                 + 0.004 * (f["duration_s"][:, 0] - 210.0)
                 + self.table.lookup(f["country"][:, 0])
                 - 0.02 * tf.cast(f["hour_of_day"][:, 0], tf.float32))
        p = tf.sigmoid(logit)
        return {"probabilities": p, "scores": tf.stack([1 - p, p], axis=1)}


def test_a_candidate_whose_vocabulary_changed_is_caught_in_the_affected_slice(setup, tmp_path):
    root, served = setup
    module = _RenamedVocabulary()
    tf.saved_model.save(module, str(tmp_path / "vocab" / "1"),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    report = run_replay(str(root / "logs"), str(root / "a"), str(tmp_path / "vocab"),
                        str(tmp_path / "out"), ReplayConfig(slices=[["country"]]))
    by_country = report["slices"]["country"]
    # Only US requests change, and every one of them moves by the lost US weight.
    assert by_country["US"]["abs_delta"]["p50"]["value"] > 0.05
    assert all(g["abs_delta"]["max"] == 0.0 for c, g in by_country.items() if c != "US")
    assert by_country["US"]["symmetric_flip_rate"]["high"] > 0.05
    assert not report["verdict"]["passed"]


def _auc(scores, labels):
    """AUC by counting ordered pairs (positive scored above negative; ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def test_labels_give_each_models_quality_on_the_same_traffic(setup, tmp_path):
    root, served = setup
    ids, labels = [], []
    for data in training_examples(root / "data"):
        f = tf.train.Example.FromString(data).features.feature
        ids.append(f["request_id"].bytes_list.value[0].decode())
        labels.append(f["skipped"].int64_list.value[0])
    labels = np.array(labels)
    # Labels for all but the last 100 requests, one of them twice (the later one wins).
    with open(tmp_path / "labels.csv", "w") as out:
        out.write("request_id,label,timestamp\n")
        out.write(f"{ids[0]},{1 - labels[0]},100\n")
        for rid, y in zip(ids[:-100], labels[:-100], strict=False):
            out.write(f"{rid},{y},200\n")
    report = run_replay(str(root / "logs"), str(root / "a"), str(root / "b"),
                        str(tmp_path / "out"), ReplayConfig(), labels=str(tmp_path / "labels.csv"))
    q = report["quality"]
    assert (q["matched"], q["unmatched"]) == (len(ids) - 100, 100)
    a = _probabilities(str(root / "a" / "1"), served)[:-100]
    b = _probabilities(str(root / "b" / "1"), served)[:-100]
    y = labels[:-100]
    auc = q["metrics"]["auc"]
    assert auc["a"]["value"] == pytest.approx(_auc(a, y), abs=1e-6)
    assert auc["b"]["value"] == pytest.approx(_auc(b, y), abs=1e-6)
    # B is A plus a constant logit: the ranking, hence the AUC, can change only where float32
    # rounding makes or breaks a tie.
    assert auc["b_minus_a"]["value"] == pytest.approx(0.0, abs=1e-4)
    accuracy = q["metrics"]["accuracy"]
    assert accuracy["b"]["value"] == pytest.approx(np.mean((b >= 0.5) == y), abs=1e-6)
    assert accuracy["b_minus_a"]["low"] <= accuracy["b_minus_a"]["value"] \
        <= accuracy["b_minus_a"]["high"]
    assert report["verdict"]["checks"][-1]["check"].startswith("p99")  # not gated by default


@pytest.mark.slow
def test_quality_gate_and_bad_labels(setup, tmp_path):
    root, _ = setup
    ids = [tf.train.Example.FromString(d).features.feature["request_id"].bytes_list.value[0]
           .decode() for d in training_examples(root / "data")]
    (tmp_path / "labels.csv").write_text("".join(f"{rid},{i % 2}\n" for i, rid in
                                                 enumerate(ids)))
    common = ["shadow", "replay", "--logs", str(root / "logs"), "--baseline", str(root / "a"),
              "--candidate", str(root / "a"), "--labels", str(tmp_path / "labels.csv")]
    gated = tandem(*common, "--out", str(tmp_path / "g"), "--set",
                   "thresholds.max_quality_drop=0.01")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "auc B - A (95% lower bound)" in gated.stdout and "accuracy" in gated.stdout
    (tmp_path / "bad.csv").write_text("request_id,label\nr1,maybe\n")
    bad = tandem(*common[:-1], str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b"))
    assert bad.returncode == 2
    assert "bad.csv:2: label 'maybe' is not a number" in bad.stderr
    # Found inside the Beam job, it is still one line: no traceback, no library log line.
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_html_report_renders_in_chromium_and_fetches_nothing(setup, tmp_path):
    from tests import browser

    root, _ = setup
    run_replay(str(root / "logs"), str(root / "a"), str(root / "b"), str(tmp_path / "out"),
               ReplayConfig(slices=[["device"]]))
    # Deltas, the two score distributions, B against A, and flip rate by device.
    rendered = render_failed_report(tmp_path / "out", figures=4)
    assert browser.ink(rendered.screenshot) > 0.02
    text = (tmp_path / "out" / "report.html").read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text


@pytest.mark.pipeline  # LocalDagRunner
def test_promotion_pipeline_runs_shadow_validator_under_tfx_and_records_the_blessing(
        setup, tmp_path):
    """LocalDagRunner and ML Metadata: the CLI's exit status and the blessing artifact
    follow the verdict; the Kubeflow compile of the same DAG names the component."""
    import json

    import ml_metadata as mlmd
    from tfx import v1 as tfx

    root, _ = setup
    common = ["shadow", "validate", "--logs", str(root / "logs"), "--baseline",
              str(root / "a" / "1")]
    passed = tandem(*common, "--candidate", str(root / "a" / "1"), "--out", str(tmp_path / "p"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "blessed=1" in passed.stdout
    failed = tandem(*common, "--candidate", str(root / "b" / "1"), "--out", str(tmp_path / "f"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "f" / "metadata.sqlite")))
    [blessing] = store.get_artifacts_by_type("ModelBlessing")
    assert blessing.custom_properties["blessed"].int_value == 0
    assert "SHADOW_NOT_BLESSED" in os.listdir(blessing.uri)
    [execution] = [e for e in store.get_executions()
                   if "ShadowValidator" in store.get_execution_types_by_id([e.type_id])[0].name]
    events = store.get_events_by_execution_ids([execution.id])
    inputs = {a.uri for a in store.get_artifacts_by_id(
        [e.artifact_id for e in events if e.type == mlmd.proto.Event.INPUT])}
    assert str(root / "logs") in inputs and str(root / "b" / "1") in inputs

    out = tmp_path / "promotion.json"
    compiled = tandem("compile", "promotion", "--kubeflow", str(out), "--baseline",
                      "gs://bucket/models/listening/1", "--candidate",
                      "gs://bucket/models/listening/2", "--logs", "gs://bucket/logs/2026-11-28",
                      "--pipeline-root", "gs://bucket/tandem")
    assert compiled.returncode == 0, compiled.stderr
    tasks = set(json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"])
    assert tasks == {"ShadowValidator", "request_logs", "baseline_model", "candidate_model"}
    assert "tandem.components.shadow_validator.executor.Executor" in out.read_text()
    missing = tandem("compile", "promotion", "--kubeflow", str(out))
    assert missing.returncode == 2 and "--baseline" in missing.stderr


def test_replay_config_keys_are_checked_in_the_one_format(tmp_path):
    from tandem.components.shadow.replay import load_replay_config

    path = tmp_path / "replay.yaml"
    path.write_text("thresholds: {max_flip_rate: 0.1, min_requests: 50}\nslices: [[country]]\n")
    config = load_replay_config(str(path), ["top_n=5"])
    assert (config.thresholds.max_flip_rate, config.thresholds.min_requests) == (0.1, 50)
    assert (config.slices, config.top_n, config.batch_size) == ([["country"]], 5, 512)
    with pytest.raises(ReplayError) as error:
        load_replay_config(str(path), ["thresholds.max_flip=0.2"])
    assert str(error.value) == (
        "unknown key 'thresholds.max_flip' in replay config; known: bootstrap, max_flip_rate, "
        "max_missing_entities, max_p99_abs_delta, max_quality_drop, min_requests, "
        "parity_tolerance, seed")
    with pytest.raises(ReplayError, match=r"^key 'slices\[0\]' in replay config: expected a "
                                          "list, got 'country'$"):
        load_replay_config(None, ["slices=[country]"])
    with pytest.raises(ReplayError, match="^key 'batch_size' in replay config: expected an "
                                          "integer >= 1, got 0$"):
        load_replay_config(None, ["batch_size=0"])


@pytest.mark.parametrize("override,message", [
    ("thresholds.max_flip_rate=-0.1", "'thresholds.max_flip_rate' in replay config: expected a "
                                      "number between 0 and 1 (a share of the requests), got -0.1"),
    ("thresholds.max_flip_rate=1.5", "expected a number between 0 and 1"),
    ("thresholds.max_flip_rate=.nan", "'thresholds.max_flip_rate' in replay config: expected "
                                      "a finite number, got nan"),
    ("thresholds.max_p99_abs_delta=.inf", "expected a finite number, got inf"),
    ("thresholds.parity_tolerance=-1", "'thresholds.parity_tolerance' in replay config: "
                                       "expected a number >= 0, got -1.0"),
    ("thresholds.bootstrap=5", "'thresholds.bootstrap' in replay config: expected an integer "
                               ">= 20 (a 95% interval needs resamples beyond its tails), got 5"),
    ("thresholds.max_missing_entities=-3", "expected an integer >= 0, got -3"),
    ("thresholds.min_requests=-1", "expected an integer >= 0, got -1"),
])
def test_a_threshold_out_of_its_range_is_one_line_naming_the_key(override, message):
    """A negative limit, a share above 1, a NaN (which no comparison passes or fails as meant)
    or too few resamples would make the gate meaningless without a word: refused."""
    from tandem.components.shadow.replay import load_replay_config

    with pytest.raises(ReplayError) as error:
        load_replay_config(None, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_null_limits_and_a_required_improvement_are_accepted():
    from tandem.components.shadow.replay import load_replay_config

    config = load_replay_config(None, ["thresholds.max_flip_rate=null",
                                       "thresholds.max_quality_drop=-0.01",
                                       "thresholds.bootstrap=20"])
    assert config.thresholds.max_flip_rate is None
    assert config.thresholds.max_quality_drop == -0.01  # B must be better by 0.01


def test_a_components_replay_config_text_is_bound_as_a_file_would_be():
    """The exec property the promotion pipeline writes (JSON) binds to the same config, and is
    checked the same way; text that is not a JSON mapping is one line."""
    from tandem.components.shadow.replay import replay_config_from_text

    config = replay_config_from_text(json.dumps({"thresholds": {"max_flip_rate": 0.1},
                                                 "top_n": 5}))
    assert (config.thresholds.max_flip_rate, config.top_n) == (0.1, 5)
    assert replay_config_from_text(None) == replay_config_from_text("{}")
    with pytest.raises(ReplayError, match="^key 'batch_size' in replay config: expected an "
                                          "integer >= 1, got 0$"):
        replay_config_from_text('{"batch_size": 0}')
    with pytest.raises(ReplayError, match="^replay config is not valid JSON: "):
        replay_config_from_text("top_n: [")
    with pytest.raises(ReplayError, match="^replay config must be a mapping at the top level$"):
        replay_config_from_text("[1, 2]")
