"""End-to-end: the validation front of the real TFX pipeline on small data."""

import io
import os
import subprocess
import sys

import pytest

from tandem.pipeline.config import load_config
from tandem.pipeline.datasets import listening
from tandem.pipeline.runner import run
from tandem.schemas.exit_status import CHECK_FAILED as EXIT_ANOMALIES
from tandem.schemas.exit_status import OK as EXIT_OK

ROWS = 4500  # the eval split (1/3) must stay above the schema's min_examples_count of 1000

def _rerun(trained, *extra):
    """The validation front again, on the session run's output directory (a warm cache: the
    same Beam mode)."""
    config = load_config("listening", [f"data.location={trained.config.data.location}",
                                       f"output_dir={trained.config.output_dir}",
                                       "beam.direct_running_mode=multi_processing", *extra])
    out = io.StringIO()
    result = run(config, until="validate", out=out)
    return result, out.getvalue()


@pytest.mark.xdist_group("trained_listening")
def test_clean_data_passes_and_a_rerun_is_served_from_cache(trained_listening):
    first = trained_listening
    for component in ("ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                      "ValidationGate"):
        assert f"[{component}] started" in first.stdout
        assert f"[{component}] finished" in first.stdout
    assert os.path.isdir(first.outputs["statistics"].uri)
    assert os.path.isfile(first.config.metadata_path)

    again, text = _rerun(first)
    assert again.exit_code == EXIT_OK and again.anomalies == [], text
    assert text.count("(cached)") == 5, text
    assert again.outputs["statistics"].uri == first.outputs["statistics"].uri


@pytest.mark.xdist_group("trained_listening")
def test_an_edited_schema_is_revalidated_not_cached(trained_listening, tmp_path):
    """ImportSchemaGen caches on the schema's path; the content-addressed copy gives an edited
    schema a new path, so the same data is revalidated against a warm cache, and the original
    schema is served from the cache again afterwards."""
    schema = tmp_path / "schema.pbtxt"
    text = open(load_config("listening").schema).read()
    # Tighten age so that the same clean data now breaks the contract.
    schema.write_text(text.replace("min: 10\n    max: 90", "min: 30\n    max: 90"))
    result, out = _rerun(trained_listening, f"schema={schema}")
    assert result.exit_code == EXIT_ANOMALIES, out
    assert {(f, t) for _, f, t, _ in result.anomalies} == {("age", "INT_TYPE_SMALL_INT")}
    cached = {line.split("]")[0].split("[")[-1] for line in out.splitlines()
              if line.endswith("(cached)")}
    assert cached == {"ImportExampleGen", "StatisticsGen"}, out  # the data was not re-read

    result, out = _rerun(trained_listening)
    assert result.exit_code == EXIT_OK and out.count("(cached)") == 5, out


def test_cli_exits_1_and_prints_the_anomaly_table(tmp_path):
    """One drift profile end to end through the CLI; the others are checked in process
    against the curated schema (tests/schemas)."""
    listening.generate(str(tmp_path / "data"), ROWS, seed=4, drift=frozenset({"new_country"}))
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.pipeline.cli", "run", "--config", "listening",
         "--set", f"data.location={tmp_path / 'data'}", "--set", f"output_dir={tmp_path / 'out'}",
         "--set", "beam.direct_running_mode=in_memory"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("split"))
    assert header.split() == ["split", "feature", "anomaly", "type", "description"]
    assert "country  ENUM_TYPE_UNEXPECTED_STRING_VALUES" in proc.stdout
    assert "Traceback" not in proc.stderr
