"""The part of TFX's public API (`tfx.v1`) that tandem uses, read from the modules `tfx.v1`
re-exports: the same classes and functions, under the same names (`tfx.components.Trainer`,
`tfx.dsl.Importer`, ...), so code reads as TFX's guides write it.

Why not `from tfx import v1 as tfx`: importing `tfx.v1` imports all of `tfx.v1.extensions`,
whose Vertex AI and BigQuery clients (`google.cloud.aiplatform` alone is about 3 s here) are
never used by tandem and were part of the start-up of every `tandem run`, `retrain`, `loop` and
`monitor --pipeline`. bench/imports.py prints what this saves. Nothing in TFX, TFMA or TFT
imports `tfx.v1` itself (tests/components/test_tfx_api.py checks both).

    from tandem.components import tfx_api as tfx
"""

from __future__ import annotations

from types import SimpleNamespace

from tfx.components.evaluator.component import Evaluator
from tfx.components.example_gen.csv_example_gen.component import CsvExampleGen
from tfx.components.example_gen.import_example_gen.component import ImportExampleGen
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.pusher.component import Pusher
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.transform.component import Transform
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.common.importer import Importer
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline
from tfx.proto.pusher_pb2 import PushDestination
from tfx.proto.trainer_pb2 import EvalArgs, TrainArgs
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

components = SimpleNamespace(
    CsvExampleGen=CsvExampleGen, ImportExampleGen=ImportExampleGen,
    StatisticsGen=StatisticsGen, ImportSchemaGen=ImportSchemaGen,
    ExampleValidator=ExampleValidator, Transform=Transform, Trainer=Trainer,
    Evaluator=Evaluator, Pusher=Pusher, FnArgs=FnArgs)
dsl = SimpleNamespace(
    Pipeline=Pipeline, Importer=Importer, Resolver=Resolver, Channel=Channel,
    components=SimpleNamespace(component=component, InputArtifact=InputArtifact,
                               OutputArtifact=OutputArtifact, Parameter=Parameter),
    experimental=SimpleNamespace(LatestBlessedModelStrategy=LatestBlessedModelStrategy))
types = SimpleNamespace(standard_artifacts=standard_artifacts)
proto = SimpleNamespace(TrainArgs=TrainArgs, EvalArgs=EvalArgs, PushDestination=PushDestination)
orchestration = SimpleNamespace(LocalDagRunner=LocalDagRunner)
