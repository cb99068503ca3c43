"""ShadowValidator: the TFX component that blesses a candidate when its replay against the
serving model on logged traffic passes the gate (components/shadow/replay.py).

Inputs: `baseline_model` (the model that served the logs), `candidate_model`, and
`request_logs` (an Examples artifact whose uri holds request-log files, e.g. from an
Importer). Output: `blessing`, written the TFX way: a `SHADOW_BLESSED` or
`SHADOW_NOT_BLESSED` file, the int custom property `blessed`, and the replay's report.json
beside them, so a promotion pipeline or a Pusher can require it.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from tandem.components.shadow_validator.executor import Executor


class ShadowValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        # The replay config as JSON (tandem.components.shadow.replay.load_replay_config's keys).
        "config": ExecutionParameter(type=str),
        # The function that draws report.html, by dotted name; none: no page.
        "render": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "baseline_model": ChannelParameter(type=standard_artifacts.Model),
        "candidate_model": ChannelParameter(type=standard_artifacts.Model),
        "request_logs": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class ShadowValidator(base_component.BaseComponent):
    SPEC_CLASS = ShadowValidatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, baseline_model: types.BaseChannel, candidate_model: types.BaseChannel,
                 request_logs: types.BaseChannel, config: str = "{}", render: str = ""):
        blessing = types.Channel(type=standard_artifacts.ModelBlessing)
        super().__init__(spec=ShadowValidatorSpec(
            baseline_model=baseline_model, candidate_model=candidate_model,
            request_logs=request_logs, config=config, render=render,
            blessing=blessing))
