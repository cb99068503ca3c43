"""Test setup shared by every test: environment before TensorFlow loads, and the expensive runs
that many tests only read, made once per session (one validation front and training run)."""

import dataclasses
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def clean_listening(tmp_path_factory):
    """4,500 clean listening examples (TFRecord and CSV), generated once per session."""
    from components.datasets import listening

    out = tmp_path_factory.mktemp("listening")
    listening.generate(str(out), 4500, seed=7, formats=("tfrecord", "csv"))
    return out


@dataclasses.dataclass
class CliRun:
    """A `tandem run` made as a user makes it, with what ML Metadata recorded of it."""

    config: object  # PipelineConfig
    returncode: int
    stdout: str
    stderr: str
    outputs: dict
    pushed: str | None


def tandem(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `tandem` command in a child process; both pipes drained (no deadlock on a full
    pipe), bounded in time."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_listening(clean_listening, tmp_path_factory):
    """The listening pipeline run once through push by the CLI, in the default Beam mode
    (multi_processing, two workers). Tests that only read its outputs share it; tests that
    rerun on its output directory see a warm cache."""
    from pipeline.config import load_config
    from pipeline.runner import latest_outputs, pushed_destination

    out_dir = tmp_path_factory.mktemp("trained")
    # Every gate on: on 3,000 training rows the Trainer may ship the linear model when the
    # configured one is not better beyond the eval split's error; the tests read which.
    overrides = [f"data.location={clean_listening}", f"output_dir={out_dir}"]
    proc = tandem("run", "--config", "listening", *[a for o in overrides for a in ("--set", o)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = load_config("listening", overrides)
    outputs = latest_outputs(config)
    return CliRun(config, proc.returncode, proc.stdout, proc.stderr, outputs,
                  pushed_destination(outputs))
