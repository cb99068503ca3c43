"""Test setup shared by every test: environment before TensorFlow loads, small data fixtures."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def clean_listening(tmp_path_factory):
    """4,500 clean listening examples (TFRecord and CSV), generated once per session."""
    from components.datasets import listening

    out = tmp_path_factory.mktemp("listening")
    listening.generate(str(out), 4500, seed=7, formats=("tfrecord", "csv"))
    return out
