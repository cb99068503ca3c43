"""End-to-end: the validation front of the real TFX pipeline on small data."""

import io
import os
import subprocess
import sys

import pytest

from components.datasets import listening
from pipeline.config import load_config
from pipeline.runner import EXIT_ANOMALIES, EXIT_OK, run

ROWS = 4500  # the eval split (1/3) must stay above the schema's min_examples_count of 1000


def _run(data_dir, out_dir, *extra):
    config = load_config(
        "listening", [f"data.location={data_dir}", f"output_dir={out_dir}", *extra]
    )
    out = io.StringIO()
    result = run(config, until="validate", out=out)
    return result, out.getvalue()


def test_clean_data_passes_and_a_rerun_is_served_from_cache(clean_listening, tmp_path):
    result, text = _run(clean_listening, tmp_path / "out")
    assert result.exit_code == EXIT_OK, text
    assert result.anomalies == []
    for component in ("ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                      "ValidationGate"):
        assert f"[{component}] started" in text and f"[{component}] finished" in text
    assert os.path.isdir(result.outputs["statistics"].uri)
    assert os.path.isfile(tmp_path / "out" / "metadata.sqlite")

    again, text2 = _run(clean_listening, tmp_path / "out")
    assert again.exit_code == EXIT_OK
    assert text2.count("(cached)") == 5, text2
    assert again.outputs["statistics"].uri == result.outputs["statistics"].uri


def test_an_edited_schema_is_revalidated_not_cached(clean_listening, tmp_path):
    schema = (tmp_path / "schema.pbtxt")
    text = open(load_config("listening").schema).read()
    # Tighten age so that the same clean data now breaks the contract.
    schema.write_text(text.replace("min: 10\n    max: 90", "min: 30\n    max: 90"))
    result, out = _run(clean_listening, tmp_path / "out", f"schema={schema}")
    assert result.exit_code == EXIT_ANOMALIES, out
    assert {(f, t) for _, f, t, _ in result.anomalies} == {("age", "INT_TYPE_SMALL_INT")}


BREAKING = {
    "new_country": {("country", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")},
    "new_device": {("device", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")},
    "impossible_values": {("age", "INT_TYPE_SMALL_INT"), ("duration_s", "FLOAT_TYPE_SMALL_FLOAT")},
    "missing_features": {
        ("device", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
        ("popularity", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
    },
}


@pytest.mark.parametrize("profile", sorted(BREAKING))
def test_schema_breaking_drift_halts_with_the_expected_anomalies(profile, tmp_path):
    listening.generate(str(tmp_path / "data"), ROWS, seed=3, drift=frozenset({profile}))
    result, text = _run(tmp_path / "data", tmp_path / "out", "beam.direct_running_mode=in_memory")
    assert result.exit_code == EXIT_ANOMALIES, text
    found = {(feature, kind) for _, feature, kind, _ in result.anomalies}
    assert BREAKING[profile] <= found, found
    assert {split for split, *_ in result.anomalies} == {"train", "eval"}
    assert "the run stopped before anything downstream ran" in text


def test_drift_that_keeps_the_schema_passes_the_front(tmp_path):
    listening.generate(str(tmp_path / "data"), ROWS, seed=3, drift=frozenset({"age_shift", "skip_rate"}))
    result, text = _run(tmp_path / "data", tmp_path / "out", "beam.direct_running_mode=in_memory")
    assert result.exit_code == EXIT_OK, text


def test_taxi_csv_passes_with_its_curated_schema(tmp_path):
    config = load_config("taxi", [f"output_dir={tmp_path / 'out'}"])
    out = io.StringIO()
    result = run(config, until="validate", out=out)
    assert result.exit_code == EXIT_OK, out.getvalue()
    assert "[CsvExampleGen] finished" in out.getvalue()


def test_cli_exits_1_and_prints_the_anomaly_table(tmp_path):
    listening.generate(str(tmp_path / "data"), ROWS, seed=4, drift=frozenset({"new_country"}))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", "listening",
         "--set", f"data.location={tmp_path / 'data'}", "--set", f"output_dir={tmp_path / 'out'}",
         "--set", "beam.direct_running_mode=in_memory"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("split"))
    assert header.split() == ["split", "feature", "anomaly", "type", "description"]
    assert "country  ENUM_TYPE_UNEXPECTED_STRING_VALUES" in proc.stdout
    assert "Traceback" not in proc.stderr
