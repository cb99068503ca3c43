"""tandem pipeline: what the DAG is and where it runs (config, create_pipeline, runners, CLI)."""

import os

# TF Transform 1.16 needs Keras 2; this must be set before TensorFlow is imported,
# and Beam worker subprocesses inherit it from here.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
