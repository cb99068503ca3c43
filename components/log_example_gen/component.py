"""LogExampleGen: an ExampleGen whose input is the gateway's request log plus late labels.

    Importer(request logs) ─┐
    Importer(labels) ───────┴─> LogExampleGen ─> Examples (Split-train, Split-eval; span =
                                                 the log window's first day, YYYYMMDD)

Everything downstream is the unchanged training pipeline. Both inputs are artifacts, so ML
Metadata leads from the log directory and the labels file to the Examples and on to the
model. `label_kind` is the label's type in the pipeline's schema (INT, FLOAT or BYTES;
`tandem.schemas.labels.label_kind`): the labels are read, checked and written as that kind.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from tandem.components.log_example_gen.executor import Executor
from tandem.schemas.labels import check_kind


class LogExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "label": ExecutionParameter(type=str),
        "label_kind": ExecutionParameter(type=str),
        "label_delay_s": ExecutionParameter(type=float, optional=True),
        "train_buckets": ExecutionParameter(type=int, optional=True),
        "eval_buckets": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        "request_logs": ChannelParameter(type=standard_artifacts.Examples),
        "labels": ChannelParameter(type=standard_artifacts.ExternalArtifact),
    }
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class LogExampleGen(base_component.BaseComponent):
    SPEC_CLASS = LogExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, request_logs: types.BaseChannel, labels: types.BaseChannel, label: str,
                 label_kind: str, label_delay_s: float = 7 * 86400.0,
                 train_buckets: int = 2, eval_buckets: int = 1):
        super().__init__(spec=LogExampleGenSpec(
            request_logs=request_logs, labels=labels, label=label,
            label_kind=check_kind(label_kind), label_delay_s=float(label_delay_s),
            train_buckets=train_buckets, eval_buckets=eval_buckets,
            examples=types.Channel(type=standard_artifacts.Examples)))
