"""SourceValidator: the TFX component that blesses a feature-source snapshot when the logged
traffic, re-decorated from it, passes the replay's gate (components/shadow/features_replay.py):
the sibling of ShadowValidator for a data change instead of a model change (or both at once).

Inputs: `baseline_model` (the model that served the logs), `candidate_model` (the same one to
judge the snapshot alone) and `request_logs` (an Examples artifact whose uri holds request-log
files). Parameters: the candidate snapshot (`candidate_features`: a SQLite path or
redis://HOST:PORT[?prefix=NAME]), the gateway config whose joins and source served the log,
and the replay config. Output: `blessing`, a FeatureSourceBlessing written the TFX way: a
`SOURCE_BLESSED` or `SOURCE_NOT_BLESSED` file, the int custom property `blessed`, the
snapshot's name, the columns the divergence is attributed to (`blamed`), and report.json.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from tandem.components.source_validator.executor import Executor


class FeatureSourceBlessing(types.Artifact):
    """A feature-source snapshot's verdict, as ModelBlessing is a model's."""

    TYPE_NAME = "tandem.FeatureSourceBlessing"  # namespaced: Kubeflow's rule for custom types


class SourceValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "candidate_features": ExecutionParameter(type=str),
        "gateway_config": ExecutionParameter(type=str),
        # The replay config as JSON (tandem.components.shadow.replay.load_replay_config's keys).
        "config": ExecutionParameter(type=str),
        # By dotted name: the function that opens the re-decoration, (gateway config,
        # candidate snapshot) -> (redecorator factory, its spec, the snapshots' names), and the
        # one that draws report.html (none: no page).
        "prepare": ExecutionParameter(type=str),
        "render": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "baseline_model": ChannelParameter(type=standard_artifacts.Model),
        "candidate_model": ChannelParameter(type=standard_artifacts.Model),
        "request_logs": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=FeatureSourceBlessing),
    }


class SourceValidator(base_component.BaseComponent):
    SPEC_CLASS = SourceValidatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, baseline_model: types.BaseChannel, candidate_model: types.BaseChannel,
                 request_logs: types.BaseChannel, candidate_features: str,
                 gateway_config: str, prepare: str, config: str = "{}", render: str = ""):
        blessing = types.Channel(type=FeatureSourceBlessing)
        super().__init__(spec=SourceValidatorSpec(
            baseline_model=baseline_model, candidate_model=candidate_model,
            request_logs=request_logs, candidate_features=candidate_features,
            gateway_config=gateway_config, config=config, prepare=prepare, render=render,
            blessing=blessing))
