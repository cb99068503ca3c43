"""`tandem score`: the ML Test Score (Breck et al., 2017) of a pipeline, from its own evidence.

28 tests, 7 in each of four sections. A test scores 1 when it is automated (a check that ran,
found in the run's artifacts), 0.5 when it is done by hand and a reviewer's note says so (in
the reviews file the config names), 0 otherwise. A section's score is its sum; the system's
is the minimum over the sections. Nothing is scored manual by default, and nothing is re-run:
the evidence is what ML Metadata, the build record, the Evaluator, the replay, the monitor and
the promotion history already hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable
from typing import Any

SECTIONS = ("data", "model", "infrastructure", "monitoring")
RUBRIC: list[tuple[str, str, str]] = [
    ("data", "D1", "Feature expectations are captured in a schema"),
    ("data", "D2", "All features are beneficial"),
    ("data", "D3", "No feature's cost is too much"),
    ("data", "D4", "Features adhere to meta-level requirements"),
    ("data", "D5", "The data pipeline has appropriate privacy controls"),
    ("data", "D6", "New features can be added quickly"),
    ("data", "D7", "All input feature code is tested"),
    ("model", "M1", "Model specs are reviewed and submitted"),
    ("model", "M2", "Offline and online metrics correlate"),
    ("model", "M3", "All hyperparameters have been tuned"),
    ("model", "M4", "The impact of model staleness is known"),
    ("model", "M5", "A simpler model is not better"),
    ("model", "M6", "Model quality is sufficient on important data slices"),
    ("model", "M7", "The model is tested for considerations of inclusion"),
    ("infrastructure", "I1", "Training is reproducible"),
    ("infrastructure", "I2", "Model specs are unit tested"),
    ("infrastructure", "I3", "The ML pipeline is integration tested"),
    ("infrastructure", "I4", "Model quality is validated before serving"),
    ("infrastructure", "I5", "The model is debuggable"),
    ("infrastructure", "I6", "Models are canaried before serving"),
    ("infrastructure", "I7", "Serving models can be rolled back"),
    ("monitoring", "Mon1", "Dependency changes result in notification"),
    ("monitoring", "Mon2", "Data invariants hold for inputs"),
    ("monitoring", "Mon3", "Training and serving are not skewed"),
    ("monitoring", "Mon4", "Models are not too stale"),
    ("monitoring", "Mon5", "Models are numerically stable"),
    ("monitoring", "Mon6", "Computing performance has not regressed"),
    ("monitoring", "Mon7", "Prediction quality has not regressed"),
]
IDS = [key for _, key, _ in RUBRIC]


class Failed(str):
    """A check that ran and did not hold: its evidence, scored 0."""


class ScoreError(ValueError):
    """Bad input for `tandem score` (exit status 2): the message names it."""


@dataclasses.dataclass
class Result:
    status: str = "missing"  # automated | failed (ran, did not hold) | manual | missing
    points: float = 0.0
    evidence: str = ""


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


def _json(path: str | None) -> dict | list | None:
    if path and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def gather(config, run_dir: str | None) -> Evidence:
    from components.build_record import RecordError, load_record, record_path
    from pipeline.runner import latest_outputs, pushed_destination

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
    if run_dir:
        ev.replay_path = os.path.join(run_dir, "replay", "report.json")
        ev.replay = _json(ev.replay_path)
        ev.monitor_path = os.path.join(run_dir, "monitor", "summary.json")
        ev.monitor = _json(ev.monitor_path)
        ev.history_path = os.path.join(run_dir, "models.config.history.json")
        ev.history = _json(ev.history_path)
    return ev


# ---- the automated checks: each returns the evidence text, or None when it is absent ------

def _schema(ev: Evidence) -> str | None:
    schema, anomalies = ev.outputs.get("schema"), ev.outputs.get("anomalies")
    if schema is None or anomalies is None:
        return None
    return (f"the data validated against the curated schema {schema.uri} by ExampleValidator: "
            f"{anomalies.uri}")


def _integration(ev: Evidence) -> str | None:
    pushed = ev.outputs.get("pushed_model")
    if pushed is None:
        return None
    return f"the whole pipeline ran through Pusher: {pushed.uri}"


def _validated_before_serving(ev: Evidence) -> str | None:
    blessing, evaluation = ev.outputs.get("blessing"), ev.outputs.get("evaluation")
    if blessing is None or evaluation is None:
        return None
    metric = ev.config.deciding_metric
    threshold = ev.config.evaluation.threshold
    blessed = blessing.custom_properties.get("blessed")
    state = blessed.int_value if blessed is not None else "?"
    return (f"Evaluator gate ({metric} threshold {threshold}, max regression "
            f"{ev.config.evaluation.max_regression}) blessed={state}: {blessing.uri}")


def _canaried(ev: Evidence) -> str | None:
    if not ev.replay:
        return None
    verdict = "passed" if ev.replay["verdict"]["passed"] else "failed"
    n = ev.replay.get("input", {}).get("replayed_examples", 0)
    return f"shadow replay of {n:,} logged requests, gate {verdict}: {ev.replay_path}"


def _rollback(ev: Evidence) -> str | None:
    rolled = [h for h in (ev.history or []) if h.get("action") == "rollback"]
    if not rolled:
        return None
    last = rolled[-1]
    return (f"rollback of '{last['label']}' {last['from']} -> {last['to']} at {last['time']}: "
            f"{ev.history_path}")


def _dependencies(ev: Evidence) -> str | None:
    if not ev.record or not ev.record.get("libraries"):
        return None
    return (f"build record pins {len(ev.record['libraries'])} libraries and code "
            f"{ev.record.get('code_version')}; `tandem model diff` names changes: "
            f"{ev.record_path}")


def _invariants(ev: Evidence) -> str | None:
    if not ev.monitor or not ev.monitor.get("windows"):
        return None
    n = len(ev.monitor["windows"])
    return f"{n} window(s) of served traffic validated against the schema: {ev.monitor_path}"


def _skew(ev: Evidence) -> str | None:
    if not ev.monitor or not ev.monitor.get("training_statistics"):
        return None
    skewed = ev.monitor.get("skew_features") or []
    return (f"serving windows compared with training statistics "
            f"({', '.join(skewed) or 'no'} skew): {ev.monitor_path}")


def _staleness(ev: Evidence) -> str | None:
    if not ev.record or not ev.record.get("created"):
        return None
    created = dt.datetime.fromisoformat(ev.record["created"])
    age = (dt.datetime.now(dt.timezone.utc) - created).total_seconds() / 86400
    limit = ev.config.score.max_model_age_days
    text = f"serving model built {age:.1f} days ago (limit {limit:g}): {ev.record_path}"
    return text if age <= limit else Failed(text)


def _quality_on_served(ev: Evidence) -> str | None:
    q = (ev.replay or {}).get("quality")
    if not q or not q.get("matched"):
        return None
    names = [k for k in q["metrics"] if k != "n" and q["metrics"][k]]
    return (f"{', '.join(names)} of serving and candidate models on {q['matched']:,} labelled "
            f"served requests: {ev.replay_path}")


def _offline_online(ev: Evidence) -> str | None:
    from components.build_record import RecordError, load_record

    q = (ev.replay or {}).get("quality")
    if not q:
        return None
    try:  # the serving model (A of the replay): its own offline evaluation
        record = load_record(ev.replay["baseline"])
    except (RecordError, KeyError):
        return None
    metric = ev.config.deciding_metric
    online = (q["metrics"].get(metric) or {}).get("a", {}).get("value")
    offline = record.get("eval_metrics", {}).get(metric)
    if online is None or offline is None:
        return None
    tolerance = ev.config.score.offline_online_tolerance
    text = (f"{metric} of the serving model offline {offline:.4f} (Evaluator) vs online "
            f"{online:.4f} (labelled served traffic), limit ±{tolerance:g}: {ev.replay_path}")
    return text if abs(online - offline) <= tolerance else Failed(text)


CHECKS: dict[str, Callable[[Evidence], str | None]] = {
    "D1": _schema, "M2": _offline_online, "I3": _integration, "I4": _validated_before_serving,
    "I6": _canaried, "I7": _rollback, "Mon1": _dependencies, "Mon2": _invariants,
    "Mon3": _skew, "Mon4": _staleness, "Mon7": _quality_on_served,
}


def load_reviews(path: str | None) -> dict[str, dict]:
    """Manual evidence: `reviews: [{test, reviewer, date, link, note}]`. An entry without a
    reviewer, a date or a link, or for an unknown test, is refused."""
    if not path:
        return {}
    from schemas.yaml_config import YamlConfigError, read_yaml

    try:
        raw = read_yaml(path, "reviews file") or {}
    except YamlConfigError as e:
        raise ScoreError(str(e)) from None
    entries = raw.get("reviews") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ScoreError(f"{path}: expected 'reviews:' with a list of entries")
    out: dict[str, dict] = {}
    for i, entry in enumerate(entries, 1):
        where = f"{path}: review {i}"
        if not isinstance(entry, dict):
            raise ScoreError(f"{where}: expected a mapping")
        test = entry.get("test")
        if test not in IDS:
            raise ScoreError(f"{where}: unknown test {test!r} (one of {', '.join(IDS)})")
        for key in ("reviewer", "date", "link"):
            if not str(entry.get(key) or "").strip():
                raise ScoreError(f"{where} ({test}): no {key}; a manual point needs who "
                                 "reviewed it, when, and a link to the review")
        out[test] = entry
    return out


def score(config, run_dir: str | None = None) -> dict[str, Any]:
    ev = gather(config, run_dir)
    reviews = load_reviews(config.score.reviews)
    rows = []
    for section, key, title in RUBRIC:
        result = Result()
        check = CHECKS.get(key)
        found = check(ev) if check else None
        if found and not isinstance(found, Failed):
            result = Result("automated", 1.0, found)
        elif found:
            result = Result("failed", 0.0, str(found))
        elif key in reviews:
            r = reviews[key]
            result = Result("manual", 0.5, f"reviewed by {r['reviewer']} on {r['date']}: "
                                           f"{r['link']}")
        rows.append({"section": section, "test": key, "title": title,
                     **dataclasses.asdict(result)})
    sections = {s: sum(r["points"] for r in rows if r["section"] == s) for s in SECTIONS}
    return {"tests": rows, "sections": sections, "score": min(sections.values()),
            "run": run_dir, "metadata": config.metadata_path}


def format_score(result: dict) -> list[str]:
    lines = [f"{'section':<15} {'test':<5} {'status':<9} {'pts':>4}  title / evidence"]
    for r in result["tests"]:
        lines.append(f"{r['section']:<15} {r['test']:<5} {r['status']:<9} {r['points']:>4.1f}  "
                     f"{r['title']}")
        if r["evidence"]:
            lines.append(f"{'':<37}{r['evidence']}")
    lines.append("")
    for section, points in result["sections"].items():
        lines.append(f"{section:<15} {points:.1f} / 7")
    lines.append(f"ML Test Score (the minimum over sections): {result['score']:.1f}")
    return lines
