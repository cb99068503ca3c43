"""Reports wherever data is produced: `tandem run` writes one per run, `tandem report stats`
renders any TFDV statistics, and `tandem monitor` finds the served model's training statistics
in ML Metadata."""

import os
import re

import tensorflow as tf

from tests import browser
from tests.conftest import tandem


def _render(path, tmp_path, name):
    rendered = browser.render(str(path), str(tmp_path / f"{name}.png"))
    assert rendered.requests == [] and rendered.server_hits == []
    assert rendered.violations == [] and rendered.errors == []
    assert rendered.figures and all(w > 100 and h > 50 and drawn > 5
                                    for w, h, drawn in rendered.figures)
    assert browser.ink(rendered.screenshot) > 0.02
    return rendered


def test_run_writes_a_statistics_report_and_prints_its_path(trained_listening, tmp_path):
    from tandem.pipeline.runner import statistics_report_path

    report = statistics_report_path(trained_listening.config, trained_listening.outputs)
    assert report.endswith(os.path.join("reports", "span-1", "statistics-" + os.path.basename(
        trained_listening.outputs["statistics"].uri) + ".html"))
    assert f"report             {report}" in trained_listening.stdout
    text = open(report).read()
    assert "train: " in text and "eval: " in text and "No anomalies" in text
    # The ids are described, not compared: train and eval raise no alarm between them.
    assert "0 feature(s) changed" in text and "ALERT" not in text
    assert "request_id (declared in the schema)" in text
    rendered = _render(report, tmp_path, "run")
    assert rendered.title == "tandem: 'listening' statistics and anomalies"
    # One chart per feature but the three identifiers, train and eval drawn together.
    assert len(rendered.figures) >= 14


def test_two_runs_in_one_output_dir_keep_two_reports(tmp_path):
    """A later span's run writes its own report; the earlier one is left as it was."""
    from tandem.pipeline.datasets import listening

    data, out = tmp_path / "data", tmp_path / "out"
    reports = []
    for span in (1, 2):
        listening.generate(str(data), 3300, seed=span, span=span)
        done = tandem("run", "--config", "listening", "--until", "validate",
                      "--set", f"data.location={data}", "--set", f"output_dir={out}",
                      "--set", "beam.direct_running_mode=in_memory")
        assert done.returncode == 0, done.stdout + done.stderr
        [report] = re.findall(r"^  report +(\S+)$", done.stdout, re.M)
        reports.append((report, open(report).read()))
    (first, first_text), (second, _) = reports
    assert os.path.join("reports", "span-1", "statistics-") in first
    assert os.path.join("reports", "span-2", "statistics-") in second
    assert open(first).read() == first_text  # span 1's report survives span 2's run


def test_report_stats_renders_every_statistics_format(trained_listening, tmp_path):
    import tensorflow_data_validation as tfdv

    artifact = trained_listening.outputs["statistics"].uri
    binary = os.path.join(artifact, "Split-train", "FeatureStats.pb")
    stats = tfdv.load_stats_binary(binary)
    tfdv.write_stats_text(stats, str(tmp_path / "train.pbtxt"))
    with tf.io.TFRecordWriter(str(tmp_path / "train.tfrecord")) as w:
        w.write(stats.SerializeToString())  # older TFX: stats_tfrecord
    count = f"{stats.datasets[0].num_examples:,} examples"
    names = [f.path.step[0] for f in stats.datasets[0].features]
    for n, path in enumerate((artifact, binary, str(tmp_path / "train.pbtxt"),
                              str(tmp_path / "train.tfrecord"))):
        out = tmp_path / f"r{n}.html"
        done = tandem("report", "stats", path, "--out", str(out))
        assert done.returncode == 0, done.stderr
        text = out.read_text()
        assert count in text and all(f'data-feature="{n}"' in text for n in names), path
    compared = tmp_path / "compare.html"
    done = tandem("report", "stats", binary, "--compare",
                  os.path.join(artifact, "Split-eval", "FeatureStats.pb"), "--schema",
                  trained_listening.config.schema, "--out", str(compared))
    assert done.returncode == 0, done.stderr
    text = compared.read_text()
    assert "Drift" in text and "PSI" in text and "schema domain" in text
    rendered = _render(compared, tmp_path, "compare")
    assert rendered.title == "tandem statistics comparison"
    (tmp_path / "junk.pb").write_bytes(b"\x00\x01 not statistics")
    bad = tandem("report", "stats", str(tmp_path / "junk.pb"), "--out", str(tmp_path / "x.html"))
    assert bad.returncode == 2 and "is not TFDV statistics" in bad.stderr


def test_monitor_finds_the_served_models_training_statistics_in_ml_metadata(
        trained_listening, clean_listening, tmp_path):
    from tandem.components.monitor.job import find_training_statistics
    from tests.components.monitor.conftest import examples_of, write_log

    version = int(os.path.basename(trained_listening.pushed.rstrip("/")))
    config = trained_listening.config
    found = find_training_statistics(config.metadata_path, config.model_name, version)
    assert found == os.path.join(trained_listening.outputs["statistics"].uri, "Split-train",
                                 "FeatureStats.pb")
    write_log(tmp_path / "logs", examples_of(clean_listening)[:1200], version=version)
    done = tandem("monitor", "run", "--logs", str(tmp_path / "logs"), "--config", "listening",
                  "--out", str(tmp_path / "out"), "--window-records", "600",
                  "--set", f"output_dir={config.output_dir}",
                  "--set", f"data.location={config.data.location}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no drift or skew" in done.stdout
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["training_statistics"] == found
    assert all("skew" in w for w in summary["windows"])
