"""The notebook's first cell finds the run to show without being told: `make run`'s loop
(its loop.json), else `tandem run --config listening`'s outputs, from the notebook's folder or
any folder above it."""

import json

import pytest

from tandem.pipeline.notebook import find_run


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("TANDEM_CONFIG", raising=False)
    monkeypatch.delenv("TANDEM_SET", raising=False)


def test_the_loop_that_make_run_left_is_found_from_the_notebooks_folder(tmp_path):
    loop = tmp_path / "outputs" / "loop"
    loop.mkdir(parents=True)
    overrides = [f"data.location={loop / 'data'}", f"output_dir={loop / 'pipeline'}"]
    (loop / "loop.json").write_text(json.dumps({"config": "listening", "overrides": overrides,
                                                "scenario": "default"}))
    (tmp_path / "notebooks").mkdir()
    assert find_run(str(tmp_path / "notebooks")) == ("listening", overrides)
    assert find_run(str(tmp_path)) == ("listening", overrides)


def test_without_a_loop_the_pipeline_run_of_listening_is_found(tmp_path):
    run = tmp_path / "outputs" / "listening"
    run.mkdir(parents=True)
    (run / "metadata.sqlite").write_bytes(b"")
    assert find_run(str(tmp_path / "outputs")) == ("listening", [f"output_dir={run}"])


def test_no_run_anywhere_says_what_to_run(tmp_path):
    with pytest.raises(LookupError, match="run `make run`"):
        find_run(str(tmp_path))


def test_the_environment_still_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_CONFIG", "taxi")
    monkeypatch.setenv("TANDEM_SET", "output_dir=/x;model.epochs=1")
    assert find_run(str(tmp_path)) == ("taxi", ["output_dir=/x", "model.epochs=1"])


def test_a_loop_on_a_config_file_is_found_from_another_folder(tmp_path, monkeypatch):
    """`tandem loop --config churn.yaml` names its config relative to where it ran; the
    record holds it absolute, so the notebook's folder finds the file."""
    from tandem.pipeline.loop import _write_loop_record

    (tmp_path / "churn.yaml").write_text("name: churn\n")
    loop = tmp_path / "outputs" / "loop"
    loop.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    _write_loop_record(str(loop), "churn.yaml", [], "default")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    config, _ = find_run(str(tmp_path / "notebooks"))
    assert config == str(tmp_path / "churn.yaml")
    _write_loop_record(str(loop), "listening", [], "default")  # a packaged config's name stays
    assert find_run(str(tmp_path / "notebooks"))[0] == "listening"
