"""tandem's view of TFX's public API: the same objects as `tfx.v1`, without importing `tfx.v1`
(and with it the Google Cloud clients) in a process that builds and runs tandem's pipelines."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# What a `tandem run` process imports before and while it runs the DAG: the pipeline for each
# stage and data format, every executor LocalDagRunner loads, the Trainer's module, the
# monitoring and promotion DAGs and the Kubeflow compiler.
IMPORTS = """
import sys
from tandem.pipeline.config import load_config
from tandem.pipeline.pipeline import create_pipeline
from tandem.pipeline import monitoring, promotion, kubeflow, runner
from tandem.components import trainer, trainer_executor, evaluator, slice_gate, validation_gate
from tfx.components.example_gen.csv_example_gen import executor as csv
from tfx.components.example_gen.import_example_gen import executor as imported
from tfx.components.statistics_gen import executor as stats
from tfx.components.example_validator import executor as validator
from tfx.components.transform import executor as transform
from tfx.components.pusher import executor as pusher
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
for config in ("listening", "taxi"):
    for local in (True, False):
        create_pipeline(load_config(config), f"schemas/{config}/schema.pbtxt",
                        local_metadata=local)
print(sorted(m for m in ("tfx.v1", "tfx.v1.extensions", "google.cloud.aiplatform")
             if m in sys.modules))
"""


@pytest.mark.slow
def test_building_and_running_pipelines_never_imports_tfx_v1():
    done = subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


@pytest.mark.slow
def test_every_name_is_the_object_tfx_v1_exports():
    from tfx import v1

    from tandem.components import tfx_api

    checked = 0
    for space in ("components", "dsl", "dsl.components", "dsl.experimental", "types", "proto",
                  "orchestration"):
        ours, theirs = tfx_api, v1
        for part in space.split("."):
            ours, theirs = getattr(ours, part), getattr(theirs, part)
        for name, value in vars(ours).items():
            if isinstance(value, (type(tfx_api.dsl), type(os))):  # checked on its own
                continue
            assert getattr(theirs, name) is value, f"{space}.{name}"
            checked += 1
    assert tfx_api.types.standard_artifacts.Model is v1.types.standard_artifacts.Model
    assert checked >= 20
