"""`tandem score`, first step: what a run left behind, read once, for every check to judge.

The evidence is what ML Metadata, the build record, the Evaluator, the replay, the monitor and
the promotion history already hold; nothing is re-run to score it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any


class Failed(str):
    """A check that ran and did not hold: its evidence, scored 0."""


@dataclasses.dataclass
class Evidence:
    """What a run left behind, read once."""

    config: Any
    run_dir: str | None
    outputs: dict = dataclasses.field(default_factory=dict)
    record: dict | None = None
    record_path: str | None = None
    replay: dict | None = None
    replay_path: str | None = None
    monitor: dict | None = None
    monitor_path: str | None = None
    history: list | None = None
    history_path: str | None = None
    trained: dict | None = None  # the latest trained model's build record (its checks)
    trained_path: str | None = None
    baseline_uri: str | None = None  # the Evaluator's baseline: the previous blessed model
    server_metrics_path: str | None = None
    gateway_metrics_path: str | None = None
    _metrics: dict | None = None

    def evaluation_metrics(self) -> dict:
        """{(slice, model): {metric: value}} of the latest evaluation; slice '' is overall,
        else 'feature=value'; model is candidate, baseline or diff."""
        if self._metrics is None:
            self._metrics = {}
            evaluation = self.outputs.get("evaluation")
            if evaluation is not None:
                from tandem.components.slice_gate import evaluation_metrics

                self._metrics = evaluation_metrics(evaluation.uri)
        return self._metrics


def _json(path: str | None) -> dict | list | None:
    if path and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def _baseline_uri(config, evaluation) -> str | None:
    """The model the Evaluator compared with (its `baseline_model` input), from ML Metadata."""
    from tandem.components.metadata import open_store

    store = open_store(config.metadata_path)
    events = store.get_events_by_artifact_ids([evaluation.id])
    producers = [e.execution_id for e in events if e.type == e.OUTPUT]
    if not producers:
        return None
    for event in store.get_events_by_execution_ids(producers):
        if event.type == event.INPUT and event.path.steps and \
                event.path.steps[0].key == "baseline_model":
            (artifact,) = store.get_artifacts_by_id([event.artifact_id])
            return artifact.uri
    return None


def gather(config, run_dir: str | None) -> Evidence:
    from tandem.components.build_record import RecordError, load_record, record_path
    from tandem.pipeline.runner import latest_outputs, pushed_destination

    ev = Evidence(config, run_dir)
    if os.path.exists(config.metadata_path):
        ev.outputs = latest_outputs(config)
    pushed = pushed_destination(ev.outputs) if ev.outputs else None
    if pushed:
        try:
            ev.record_path = record_path(pushed)
            ev.record = load_record(pushed)
        except RecordError:
            ev.record = None
    if "model" in ev.outputs:
        try:
            ev.trained_path = record_path(ev.outputs["model"].uri)
            ev.trained = load_record(ev.outputs["model"].uri)
        except RecordError:
            ev.trained = None
    if "evaluation" in ev.outputs:
        ev.baseline_uri = _baseline_uri(config, ev.outputs["evaluation"])
    if run_dir:
        ev.replay_path = os.path.join(run_dir, "replay", "report.json")
        ev.replay = _json(ev.replay_path)
        ev.monitor_path = os.path.join(run_dir, "monitor", "summary.json")
        ev.monitor = _json(ev.monitor_path)
        ev.history_path = os.path.join(run_dir, "models.config.history.json")
        ev.history = _json(ev.history_path)
        for name in ("server", "gateway"):
            path = os.path.join(run_dir, "server",
                                f"{'model-server' if name == 'server' else name}.metrics.prom")
            if os.path.isfile(path):
                setattr(ev, f"{name}_metrics_path", path)
    return ev
