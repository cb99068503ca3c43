"""TrafficMonitor: the TFX component that runs `tandem monitor` in a monitoring pipeline.

    Importer(request logs) ─┐
    Importer(schema) ───────┼─> TrafficMonitor ─> statistics (ExampleStatistics, a split per
    Importer(training stats)┘                      window), anomalies (ExampleAnomalies, a
                                                   split per window: schema and drift anomalies)

The anomalies artifact also holds summary.json and report.html, and carries the int property
`drift_or_skew_found` and the string properties `drift_features`/`skew_features` and
`prediction_drift_features` (the model's answers that drifted).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from tandem.components.monitor.executor import Executor


class TrafficMonitorSpec(types.ComponentSpec):
    PARAMETERS = {
        # What the monitor reads of the pipeline config, as JSON (executor.settings_json).
        "settings": ExecutionParameter(type=str),
        # The function that draws report.html, by dotted name; none: no page.
        "render": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "request_logs": ChannelParameter(type=standard_artifacts.Examples),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "training_statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                optional=True),
    }
    OUTPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }


class TrafficMonitor(base_component.BaseComponent):
    SPEC_CLASS = TrafficMonitorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, request_logs: types.BaseChannel, schema: types.BaseChannel,
                 settings: str, training_statistics: types.BaseChannel | None = None,
                 render: str = ""):
        super().__init__(spec=TrafficMonitorSpec(
            request_logs=request_logs, schema=schema, training_statistics=training_statistics,
            settings=settings, render=render,
            statistics=types.Channel(type=standard_artifacts.ExampleStatistics),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
