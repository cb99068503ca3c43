"""Beam args: `auto` runs small inputs in process and large ones in worker processes; an
explicit mode is honoured whatever the input's size."""

import pytest

from tandem.pipeline.beam import (
    IN_PROCESS_MAX_BYTES,
    beam_pipeline_args,
    running_mode,
    with_running_mode,
)
from tandem.pipeline.config import load_config

CONFIG = """name: churn
data: {location: data}
label: churned
problem_type: binary_classification
"""


def _config(tmp_path, *overrides):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return load_config(str(tmp_path / "config.yaml"), list(overrides))


def _file(tmp_path, name: str, size: int) -> str:
    path = tmp_path / "data" / name
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: the size is what counts, not the bytes written
    return str(path)


def test_auto_is_the_default_and_picks_in_memory_up_to_the_threshold(tmp_path):
    config = _config(tmp_path)
    assert config.beam.direct_running_mode == "auto"
    small = [_file(tmp_path, "a.csv", IN_PROCESS_MAX_BYTES // 2),
             _file(tmp_path, "b.csv", IN_PROCESS_MAX_BYTES // 2)]  # exactly the threshold
    assert running_mode(config, small) == "in_memory"
    assert "--direct_running_mode=in_memory" in beam_pipeline_args(config, small)
    settled = with_running_mode(config, small)
    assert settled.beam.direct_running_mode == "in_memory"
    assert beam_pipeline_args(settled) == beam_pipeline_args(config, small)


def test_auto_picks_multi_processing_above_the_threshold_or_when_the_size_is_unknown(
        tmp_path):
    config = _config(tmp_path)
    large = [_file(tmp_path, "a.csv", IN_PROCESS_MAX_BYTES),
             _file(tmp_path, "b.csv", 1)]
    assert running_mode(config, large) == "multi_processing"
    assert with_running_mode(config, large).beam.direct_running_mode == "multi_processing"
    assert running_mode(config, ["gs://bucket/data/a.csv"]) == "multi_processing"
    assert running_mode(config, [str(tmp_path / "data" / "gone.csv")]) == "multi_processing"
    assert running_mode(config) == "multi_processing"  # e.g. a Kubeflow compile: no inputs
    assert "--direct_running_mode=multi_processing" in beam_pipeline_args(config)


@pytest.mark.parametrize("mode", ["in_memory", "multi_threading", "multi_processing"])
def test_an_explicit_mode_is_honoured_at_any_size(tmp_path, mode):
    config = _config(tmp_path, f"beam.direct_running_mode={mode}")
    small = [_file(tmp_path, "a.csv", 10)]
    large = [_file(tmp_path, "b.csv", 2 * IN_PROCESS_MAX_BYTES)]
    for files in (small, large, None):
        assert running_mode(config, files) == mode
    assert with_running_mode(config, large) == config
