"""Tests for the typed pipeline config."""

import os

import pytest

from tandem.pipeline.config import ConfigError, load_config, named_config, resolve_path


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


BASE = """
name: t
data: {location: d, format: csv, pattern: "*.csv"}
label: y
problem_type: regression
schema: s.pbtxt
output_dir: out
"""


def test_shipped_configs_load_with_resolved_paths():
    listening = load_config(named_config("listening"))
    assert listening.problem_type == "binary_classification"
    assert listening.label == "skipped"
    assert os.path.isfile(listening.schema)
    assert os.path.isabs(listening.output_dir)
    taxi = load_config("taxi")  # a shipped config by name
    assert os.path.isfile(os.path.join(taxi.data.location, "data.csv"))
    assert taxi.beam.direct_running_mode == "auto"


def test_defaults_fill_optional_sections(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    assert config.split.train_buckets == 2 and config.split.eval_buckets == 1
    assert config.beam.direct_num_workers == 0  # tandem picks (pipeline/beam.py)
    assert config.output_dir == os.path.join(os.getcwd(), "out")


def test_a_four_key_config_takes_its_paths_and_layout_from_the_data(tmp_path, monkeypatch):
    """name, data, label and problem type are enough: the schema and outputs go where
    `schema propose` and `run` put them, and the format and pattern follow the files."""
    monkeypatch.chdir(tmp_path)
    minimal = "name: churn\ndata: {location: data}\nlabel: y\nproblem_type: regression\n"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("x,y\n1,2\n")
    (tmp_path / "data" / "README").write_text("not data")
    config = load_config(_write(tmp_path, minimal))
    assert config.schema == str(tmp_path / "schemas" / "churn" / "schema.pbtxt")
    assert config.output_dir == str(tmp_path / "outputs" / "churn")
    assert (config.data.format, config.data.pattern) == ("csv", "*.csv")
    for span in ("span-1", "span-2"):
        (tmp_path / "spans" / span).mkdir(parents=True)
        (tmp_path / "spans" / span / "part.tfrecord.gz").write_bytes(b"")
    spans = load_config(_write(tmp_path, minimal.replace("location: data", "location: spans")))
    assert (spans.data.format, spans.data.pattern) == ("tfrecord", "span-{SPAN}/*")
    # What is written is kept.
    kept = load_config(_write(tmp_path, minimal.replace(
        "{location: data}", "{location: data, format: tfrecord, pattern: 'x-*'}")))
    assert (kept.data.format, kept.data.pattern) == ("tfrecord", "x-*")
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "rows.csv.gz").write_bytes(b"")
    packed = load_config(_write(tmp_path, minimal.replace("location: data", "location: packed")))
    assert (packed.data.format, packed.data.pattern) == ("csv", "*.csv*")
    with pytest.raises(ConfigError, match="key 'checks.min_gain_over_baseline' in pipeline config was removed: "
                                          "the Trainer now exports the linear model"):
        load_config(_write(tmp_path, minimal + "checks: {min_gain_over_baseline: 0.003}\n"))
    with pytest.raises(ConfigError, match="key 'checks.min_importance' in pipeline config was removed: each "
                                          "feature's drop is now judged against the shuffle"):
        load_config(_write(tmp_path, minimal + "checks: {min_importance: 0.0002}\n"))
    with pytest.raises(ConfigError, match="key 'checks.importance_repeats' in pipeline config: expected an integer >= 2 "
                       r"\(the shuffle noise is measured from their spread\), got 1"):
        load_config(_write(tmp_path, minimal + "checks: {importance_repeats: 1}\n"))
    with pytest.raises(ConfigError, match="key 'model.select' in pipeline config: expected one "
                                          "of simplest_adequate, configured, got 'best'"):
        load_config(_write(tmp_path, minimal + "model: {select: best}\n"))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("labl: y", "unknown key 'labl' in pipeline config; known: beam, checks, data, "
                    "evaluation, features, label, loop, model, monitor, name, output_dir, "
                    "problem_type, schema, score, serving_dir, split"),
        ("beam: {direct_num_workrs: 2}", "unknown key 'beam.direct_num_workrs' in pipeline "
                                         "config; known: direct_num_workers, "
                                         "direct_running_mode, extra_args"),
        ("beam: {direct_num_workers: two}", "key 'beam.direct_num_workers' in pipeline config: "
                                            "expected an integer, got 'two'"),
        ("beam: {direct_num_workers: true}", "key 'beam.direct_num_workers' in pipeline config: "
                                             "expected an integer, got True"),
        ("beam: {direct_running_mode: fast}", "key 'beam.direct_running_mode' in pipeline "
                                              "config: expected one of auto, in_memory,"),
        ("beam: {extra_args: --runner=X}", "key 'beam.extra_args' in pipeline config: expected "
                                           "a list, got '--runner=X'"),
        ("model: {crosses: [[age, 3]]}", "key 'model.crosses[0][1]' in pipeline config: "
                                         "expected a string, got 3"),
        ("features: {age: {num_buckets: x}}", "key 'features.age.num_buckets' in pipeline "
                                              "config: expected an integer, got 'x'"),
        ("split: {train_buckets: 0}", "split.train_buckets"),
        ("beam: 3", "key 'beam' in pipeline config: expected a mapping, got 3"),
        # Identifiers moved to the schema, where the monitor and the report both read them.
        ("monitor: {ignore: [request_id]}", "key 'monitor.ignore' in pipeline config was "
                                            "removed: declare identifiers in the schema"),
        # Numbers out of their range, or not finite: a gate that could never mean what it says.
        ("monitor: {bootstrap: 0}", "key 'monitor.bootstrap' in pipeline config: expected an "
                                    "integer >= 20 (a 95% interval needs resamples beyond its "
                                    "tails), got 0"),
        ("monitor: {alpha: 2}", "key 'monitor.alpha' in pipeline config: expected a number "
                                "between 0 and 1 (a false-discovery rate), got 2.0"),
        ("monitor: {bins: 1}", "key 'monitor.bins' in pipeline config: expected an integer "
                               ">= 2, got 1"),
        ("monitor: {window_records: 0}", "key 'monitor.window_records'"),
        ("monitor: {drift: {psi: -1}}", "key 'monitor.drift.psi' in pipeline config: expected "
                                        "a number >= 0, got -1.0"),
        ("monitor: {skew: {missing: 1.5}}", "key 'monitor.skew.missing' in pipeline config: "
                                            "expected a number between 0 and 1"),
        ("monitor: {features: {age: {linf: -0.1}}}", "key 'monitor.features.age.linf'"),
        ("monitor: {drift: {psi: .nan}}", "key 'monitor.drift.psi' in pipeline config: "
                                          "expected a finite number, got nan"),
        ("evaluation: {threshold: .inf}", "key 'evaluation.threshold' in pipeline config: "
                                          "expected a finite number, got inf"),
        ("checks: {tuning_trials: 0}", "key 'checks.tuning_trials' in pipeline config: "
                                       "expected an integer >= 1"),
        ("checks: {reproducibility_tolerance: -1}", "key 'checks.reproducibility_tolerance'"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, BASE + extra + "\n"))
    assert message in str(error.value)


def test_null_gates_and_edge_values_are_accepted(tmp_path):
    config = load_config(_write(tmp_path, BASE + "monitor: {alpha: 1, bootstrap: 20, drift: "
                                "{psi: null, missing: 0}}\n"))
    assert (config.monitor.alpha, config.monitor.drift.psi) == (1.0, None)


def test_missing_required_key_and_bad_problem_type(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'label' in pipeline config$"):
        load_config(_write(tmp_path, BASE.replace("label: y\n", "")))
    with pytest.raises(ConfigError, match="problem_type.*one of"):
        load_config(_write(tmp_path, BASE.replace("regression", "ranking")))
    with pytest.raises(ConfigError, match="data.format"):
        load_config(_write(tmp_path, BASE.replace("format: csv", "format: parquet")))


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read pipeline config"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML") as bad:
        load_config(_write(tmp_path, "name: [unclosed"))
    assert "\n" not in str(bad.value) and "line 1" in str(bad.value)  # one line, with where
    with pytest.raises(ConfigError, match="empty"):
        load_config(_write(tmp_path, ""))


def test_overrides_apply_before_checking(tmp_path):
    config = load_config(
        _write(tmp_path, BASE), ["output_dir=/tmp/x", "beam.direct_num_workers=1", "label=z"]
    )
    assert config.output_dir == "/tmp/x"
    assert config.beam.direct_num_workers == 1
    assert config.label == "z"
    with pytest.raises(ConfigError, match="key=value"):
        load_config(_write(tmp_path, BASE), ["output_dir"])
    with pytest.raises(ConfigError, match="unknown key 'bogus' in pipeline config; known: "):
        load_config(_write(tmp_path, BASE), ["bogus=1"])


def test_package_paths_resolve_to_installed_packages():
    path = resolve_path("pkg:tfx/examples/chicago_taxi_pipeline/data/simple/data.csv")
    assert os.path.isfile(path)
    with pytest.raises(ConfigError, match="not installed"):
        resolve_path("pkg:no_such_package_xyz/a")
    assert resolve_path("gs://bucket/x") == "gs://bucket/x"


def test_package_paths_find_tandems_own_packages_first():
    """`pkg:schemas/...` (the spelling in the shipped configs) is tandem.schemas, installed
    or editable; `pkg:tandem/schemas/...` names the same files."""
    import tandem.schemas

    shipped = os.path.join(tandem.schemas.SCHEMAS_DIR, "listening", "schema.pbtxt")
    assert resolve_path("pkg:schemas/listening/schema.pbtxt") == shipped
    assert resolve_path("pkg:tandem/schemas/listening/schema.pbtxt") == shipped
    assert os.path.isfile(shipped)
    with pytest.raises(ConfigError, match="'tfx' in path .* is not installed"):
        resolve_path("pkg:tandem/tfx/x")
