"""`tandem monitor`: drift and skew in logged traffic, judged per window."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from tandem.components.monitor.drift import DriftConfig, compare_datasets
from tandem.components.monitor.job import MonitorError
from tandem.pipeline.config import load_config
from tandem.pipeline.traffic_checks import run_monitor
from tests.components.monitor.conftest import examples_of, write_log
from tests.conftest import tandem

pytestmark = pytest.mark.xdist_group("monitor")

EXPECTED = {  # each generator profile and the features it must be named by
    "age_shift": {"age"},
    "new_country": {"country"},
    "new_device": {"device"},
    "missing_features": {"device", "popularity"},
    "night_owls": {"hour_of_day"},
}


def _config(**overrides):
    return load_config("listening", [f"monitor.{k}={v}" for k, v in overrides.items()])


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_each_drift_profile_is_detected_and_named(profile, monitor_data, training_statistics,
                                                  tmp_path):
    clean = examples_of(monitor_data / "clean")[:2000]
    write_log(tmp_path / "logs", clean + examples_of(monitor_data / profile))
    summary = run_monitor(str(tmp_path / "logs"), _config(), str(tmp_path / "out"),
                          window_records=1000, training_statistics=training_statistics)
    windows = summary["windows"]
    assert [w.get("drift", {}).get("alerts", []) for w in windows[:2]] == [[], []]
    assert set(windows[2]["drift"]["alerts"]) == EXPECTED[profile]
    assert set(windows[2]["skew"]["alerts"]) == EXPECTED[profile]
    for name in EXPECTED[profile]:
        m = windows[2]["drift"]["features"][name]
        assert m["alert"] and m["q_value"] <= 0.05
        assert 800 < m["n"][1] <= m["n"][0] <= 1000  # examples that carry the feature
        assert m["psi"]["low"] is not None and m["psi"]["high"] is not None


@pytest.mark.slow
def test_impossible_values_are_schema_anomalies_and_label_drift_needs_labels(
        monitor_data, training_statistics, tmp_path):
    clean = examples_of(monitor_data / "clean")[:2000]
    write_log(tmp_path / "bad", clean + examples_of(monitor_data / "impossible_values"))
    summary = run_monitor(str(tmp_path / "bad"), _config(), str(tmp_path / "o1"),
                          window_records=1000, training_statistics=training_statistics)
    assert {"age", "duration_s"} <= set(summary["windows"][2]["schema_anomalies"])
    assert summary["windows"][0]["schema_anomalies"] == {}
    # skip_rate changes only the label: invisible without labels, named once they join.
    skipped = examples_of(monitor_data / "skip_rate")
    write_log(tmp_path / "skip", clean + skipped)
    unlabelled = run_monitor(str(tmp_path / "skip"), _config(), str(tmp_path / "o2"),
                             window_records=1000, training_statistics=training_statistics)
    assert unlabelled["drift_features"] == []
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{rid},{y}\n" for rid, _, y in clean + skipped))
    labelled = run_monitor(str(tmp_path / "skip"), _config(), str(tmp_path / "o3"),
                           window_records=1000, training_statistics=training_statistics,
                           labels=str(labels))
    assert labelled["drift_features"] == ["skipped"]
    assert labelled["input"]["labelled_examples"] == 3000


@pytest.mark.slow
def test_clean_windows_raise_no_alarm(monitor_data, training_statistics, tmp_path):
    """20 windows of 250 clean requests: no drift alarm, and a false-alarm rate at or under
    1% over every feature-window judged (drift and skew)."""
    write_log(tmp_path / "logs", examples_of(monitor_data / "clean"))
    summary = run_monitor(str(tmp_path / "logs"), _config(min_examples=200),
                          str(tmp_path / "out"), window_records=250,
                          training_statistics=training_statistics)
    assert len(summary["windows"]) == 20
    assert summary["drift_features"] == []
    judged = [m for w in summary["windows"] for kind in ("drift", "skew")
              for m in w.get(kind, {}).get("features", {}).values()]
    assert len(judged) >= 200
    assert sum(m["alert"] for m in judged) / len(judged) <= 0.01


def _stats(frame):
    options = tfdv.StatsOptions(num_quantiles_histogram_buckets=100, num_histogram_buckets=20)
    return tfdv.generate_statistics_from_dataframe(frame, stats_options=options).datasets[0]


def _numpy_psi(ref, cur, bins=10):
    edges = np.quantile(ref, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.maximum(np.histogram(ref, edges)[0] / len(ref), 1e-4)
    q = np.maximum(np.histogram(cur, edges)[0] / len(cur), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _frame(rng, n, shift=0.0, nuisance=8):
    columns = {"x": rng.normal(shift, 1.0, n)}
    for i in range(nuisance):  # other features, unchanged: the FDR control sees them too
        columns[f"z{i}"] = rng.normal(0, 1, n)
    columns["c"] = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
    return pd.DataFrame(columns)


@pytest.mark.slow
def test_a_shift_of_psi_025_is_detected_in_90_percent_of_500_example_windows():
    rng = np.random.default_rng(7)
    big = rng.normal(0, 1, 1_000_000)
    assert 0.25 <= _numpy_psi(big, big + 0.52) < 0.27  # the shift's true PSI
    detected = 0
    trials = 40
    for _ in range(trials):
        result = compare_datasets(_stats(_frame(rng, 500)), _stats(_frame(rng, 500, 0.52)),
                                  DriftConfig())
        detected += "x" in result["alerts"]
        assert set(result["alerts"]) <= {"x"}
    assert detected / trials >= 0.9


def test_psi_and_wasserstein_match_values_computed_from_the_raw_data():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(3)
    for shift in (0.1, 0.3, 0.8):
        ref, cur = _frame(rng, 4000, nuisance=0), _frame(rng, 4000, shift, nuisance=0)
        m = compare_datasets(_stats(ref), _stats(cur), DriftConfig())["features"]
        assert m["x"]["psi"]["value"] == pytest.approx(_numpy_psi(ref.x, cur.x), rel=0.1,
                                                       abs=0.01)
        assert m["x"]["wasserstein"] == pytest.approx(wasserstein_distance(ref.x, cur.x),
                                                      rel=0.05, abs=0.01)
        p = ref.c.value_counts(normalize=True)
        q = cur.c.value_counts(normalize=True)
        psi_c = float(np.sum((q - p) * np.log(q / p)))
        assert m["c"]["psi"]["value"] == pytest.approx(psi_c, abs=1e-6)
        assert m["c"]["linf"] == pytest.approx(float(np.max(np.abs(q - p))), abs=1e-6)


@pytest.mark.slow
def test_feature_value_skew_names_the_one_altered_feature(monitor_data, tmp_path):
    """The training examples themselves, logged with one feature altered, joined by id."""
    train = examples_of(monitor_data / "train")[:1500]
    altered = []
    for rid, data, y in train:
        e = tf.train.Example.FromString(data)
        e.features.feature["duration_s"].float_list.value[0] += 1.0
        altered.append((rid, e.SerializeToString(), y))
    write_log(tmp_path / "logs", altered)
    train_glob = str(monitor_data / "train" / "span-1" / "*.tfrecord.gz")
    summary = run_monitor(str(tmp_path / "logs"), _config(), str(tmp_path / "out"),
                          window_records=1500, training_examples=train_glob)
    fvs = summary["feature_value_skew"]
    assert fvs["skewed"] == ["duration_s"]
    rates = {r["feature"]: r for r in fvs["features"]}
    assert rates["duration_s"]["mismatched"] == 1500 and rates["age"]["mismatched"] == 0
    assert "duration_s" in summary["skew_features"]


@pytest.mark.slow
def test_bad_input_gets_a_clear_error(monitor_data, tmp_path):
    with pytest.raises(MonitorError, match="no request-log files match"):
        run_monitor(str(tmp_path / "none-*.gz"), _config(), str(tmp_path / "o"))
    # A log of another model's traffic.
    write_log(tmp_path / "taxi", examples_of(monitor_data / "clean")[:50], model="taxi")
    with pytest.raises(MonitorError, match="logged for model 'taxi'"):
        run_monitor(str(tmp_path / "taxi"), _config(), str(tmp_path / "o"))
    # Another dataset's examples under this model's name: the schema's features are absent.
    other = tmp_path / "other"
    writer_examples = []
    for i in range(300):
        e = tf.train.Example()
        e.features.feature["trip_miles"].float_list.value.append(float(i))
        writer_examples.append((f"r{i}", e.SerializeToString(), 0))
    write_log(other, writer_examples)
    result = tandem("monitor", "run", "--logs", str(other), "--config", "listening", "--out",
                    str(tmp_path / "o"), "--window-records", "300")
    assert result.returncode == 2 and "does not look like 'listening' traffic" in result.stderr
    # Torn and garbage records are skipped and counted; the rest is judged.
    import shutil
    import zlib

    from tandem.schemas.request_log import frame

    logs = tmp_path / "torn"
    write_log(logs, examples_of(monitor_data / "clean")[:600])
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(logs / "damaged.tfrecord.gz", "wb") as f:
        f.write(c.compress(frame(b"\x0a\xff junk") + frame(b"x" * 50)[:30])
                + c.flush(zlib.Z_SYNC_FLUSH))
    summary = run_monitor(str(logs), _config(), str(tmp_path / "o4"), window_records=600)
    assert summary["input"]["torn"] == 1 and summary["input"]["unreadable"] == 1
    assert summary["windows"][0]["examples"] == 600
    shutil.rmtree(tmp_path / "o4")


@pytest.mark.slow
def test_cli_exit_status_alerts_and_report(monitor_data, training_statistics, tmp_path):
    """Exit 1 on drift; the Prometheus textfile passes promtool; the webhook is called; the
    report renders in Chromium under a strict CSP and fetches nothing."""
    import http.server
    import subprocess
    import threading

    from tests import browser

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    clean = examples_of(monitor_data / "clean")[:2000]
    write_log(tmp_path / "logs", clean + examples_of(monitor_data / "age_shift"))
    textfile = tmp_path / "textfile" / "tandem_monitor.prom"
    try:
        result = tandem("monitor", "run", "--logs", str(tmp_path / "logs"), "--config", "listening",
                        "--out", str(tmp_path / "out"), "--window-records", "1000",
                        "--training-statistics", training_statistics,
                        "--set", f"monitor.textfile={textfile}",
                        "--set", f"monitor.webhook=http://127.0.0.1:{hook.server_port}/alert")
    finally:
        hook.shutdown()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "window 00002" in result.stdout and "drift: age" in result.stdout
    assert result.stderr == ""
    assert received and received[0]["drift"] == ["age"]
    text = textfile.read_text()
    assert 'tandem_monitor_drift{model="listening",feature="age"} 1' in text
    assert 'tandem_monitor_drift{model="listening",feature="country"} 0' in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["fdr"]["method"] == "Benjamini-Hochberg"
    assert os.path.exists(tmp_path / "out" / "window-0002" / "drift.pbtxt")
    anomalies = tfdv.load_anomalies_text(str(tmp_path / "out" / "window-0002" / "drift.pbtxt"))
    assert anomalies.drift_skew_info  # TFDV's own comparators, measured for each feature
    rendered = browser.render(str(tmp_path / "out" / "report.html"), str(tmp_path / "m.png"))
    assert rendered.title == "tandem monitor: DRIFT/SKEW FOUND"
    assert len(rendered.figures) >= 10
    assert all(w > 100 and h > 50 and drawn > 5 for w, h, drawn in rendered.figures)
    assert rendered.requests == [] and rendered.server_hits == []
    assert rendered.violations == [] and rendered.errors == []
    assert browser.ink(rendered.screenshot) > 0.02


@pytest.mark.pipeline  # LocalDagRunner
def test_monitoring_pipeline_runs_traffic_monitor_under_tfx(monitor_data, training_statistics,
                                                            tmp_path):
    """LocalDagRunner and ML Metadata: per-window statistics and anomalies artifacts, the
    found property, the exit status; and the Kubeflow compile of the same DAG."""
    import ml_metadata as mlmd
    from tfx import v1 as tfx

    clean = examples_of(monitor_data / "clean")[:2000]
    write_log(tmp_path / "logs", clean + examples_of(monitor_data / "new_country"))
    done = tandem("monitor", "pipeline", "--logs", str(tmp_path / "logs"), "--config",
                  "listening", "--out", str(tmp_path / "out"), "--window-records", "1000",
                  "--training-statistics", training_statistics)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "drift in country" in done.stdout
    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "out" / "metadata.sqlite")))
    [anomalies] = store.get_artifacts_by_type("ExampleAnomalies")
    assert anomalies.custom_properties["drift_or_skew_found"].int_value == 1
    assert anomalies.custom_properties["drift_features"].string_value == "country"
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    with open(os.path.join(anomalies.uri, "Split-window-0002", "SchemaDiff.pb"), "rb") as f:
        found = anomalies_pb2.Anomalies.FromString(f.read())
    assert "country" in found.anomaly_info  # 'NG' is outside the schema's domain
    [stats] = [a for a in store.get_artifacts_by_type("ExampleStatistics")
               if "TrafficMonitor" in a.uri]  # the other is the imported training statistics
    window = tfdv.load_stats_binary(os.path.join(stats.uri, "Split-window-0001",
                                                 "FeatureStats.pb"))
    assert window.datasets[0].num_examples == 1000

    out = tmp_path / "monitoring.json"
    compiled = tandem("compile", "monitoring", "--kubeflow", str(out), "--config",
                      "listening", "--logs", "gs://bucket/logs/2026-11-28", "--pipeline-root",
                      "gs://bucket/tandem", "--training-statistics",
                      "gs://bucket/tandem/StatisticsGen/statistics/3")
    assert compiled.returncode == 0, compiled.stderr
    tasks = set(json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"])
    assert tasks == {"TrafficMonitor", "request_logs", "schema", "training_statistics"}
    assert "tandem.components.monitor.executor.Executor" in out.read_text()


@pytest.mark.slow
def test_a_window_under_the_minimum_is_reported_too_small_not_judged(monitor_data, tmp_path):
    write_log(tmp_path / "logs", examples_of(monitor_data / "clean")[:1100])
    summary = run_monitor(str(tmp_path / "logs"), _config(min_examples=200),
                          str(tmp_path / "out"), window_records=500)
    sizes = [(w["examples"], w["too_small"]) for w in summary["windows"]]
    assert sizes == [(500, False), (500, False), (100, True)]
    last = summary["windows"][2]
    assert last["drift"].get("too_small") and not last["drift"]["features"]
    assert "too small" in open(tmp_path / "out" / "report.html").read() or \
        "n/a" in open(tmp_path / "out" / "report.html").read()


def test_a_jensen_shannon_threshold_tfdv_cannot_measure_is_left_out_not_warned_about():
    """A numeric feature with no values in a window has no histogram: TFDV would skip its
    Jensen-Shannon threshold with a C++ warning on the terminal. The schema handed to TFDV
    leaves that threshold out for those statistics, and keeps every other."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    from tandem.components.monitor.job import _measurable

    schema = text_format.Parse("""
        feature { name: "empty" type: INT
                  drift_comparator { jensen_shannon_divergence { threshold: 0.1 } } }
        feature { name: "full" type: FLOAT
                  drift_comparator { jensen_shannon_divergence { threshold: 0.1 } } }
        """, schema_pb2.Schema())
    dataset = text_format.Parse("""
        features { path { step: "empty" } num_stats { common_stats { num_missing: 50 } } }
        features { path { step: "full" } num_stats {
            common_stats { num_non_missing: 50 }
            histograms { buckets { low_value: 0 high_value: 1 sample_count: 50 } } } }
        """, statistics_pb2.DatasetFeatureStatistics())
    pruned = _measurable(schema, "drift_comparator", dataset, dataset)
    kept = {f.name: f.drift_comparator.HasField("jensen_shannon_divergence")
            for f in pruned.feature}
    assert kept == {"empty": False, "full": True}
    assert schema.feature[0].drift_comparator.HasField("jensen_shannon_divergence")  # a copy
    full_only = schema_pb2.Schema()
    full_only.feature.add().CopyFrom(schema.feature[1])
    assert _measurable(full_only, "drift_comparator", dataset) is full_only
