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

from tandem.schemas.exit_status import BadInputError

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


class ScoreError(BadInputError):
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
    if threshold is None:
        threshold = "the naive predictor's beyond its sampling error"
    change = ev.config.evaluation.max_regression
    if change is None:
        change = "the paired sampling error"
    return (f"Evaluator gate ({metric} threshold {threshold}, max regression "
            f"{change}) blessed={state}: {blessing.uri}")


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
    """Monitoring 3: serving windows judged against the training statistics. A window under
    monitor.min_examples is described but not judged, so a run whose every window was too
    small has no evidence either way."""
    if not ev.monitor or not ev.monitor.get("training_statistics"):
        return None
    judged = [w for w in ev.monitor.get("windows") or [] if not w.get("too_small")]
    if not judged:
        return None
    skewed = ev.monitor.get("skew_features") or []
    return (f"{len(judged)} serving window(s) judged against training statistics "
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
    """Model 2: the offline comparison predicts the online one. The Evaluator measured the
    candidate against the serving model on the eval split (B - A offline); the replay
    measured the same two models on labelled served traffic (B - A online). They agree when
    they differ by at most the tolerance."""
    from tandem.components.build_record import RecordError, load_record

    q = (ev.replay or {}).get("quality")
    if not q or not ev.trained or not ev.baseline_uri:
        return None
    try:  # the replay's B must be this run's candidate, and its A the Evaluator's baseline
        same_b = load_record(ev.replay["candidate"]).get("created") == ev.trained.get("created")
        same_a = load_record(ev.replay["baseline"]).get("created") == \
            load_record(ev.baseline_uri).get("created")
    except (RecordError, KeyError):
        return None
    if not (same_a and same_b):
        return None
    from tandem.pipeline.evaluation import deciding_metric_name

    metric = ev.config.deciding_metric
    diff = (q["metrics"].get(metric) or {}).get("b_minus_a") or {}
    online = diff.get("value")
    offline = ev.evaluation_metrics().get(("", "diff"), {}).get(deciding_metric_name(ev.config))
    if online is None or offline is None:
        return None
    tolerance = ev.config.score.offline_online_tolerance
    limit, error = tolerance, _offline_online_error(diff, ev.trained)
    if error is not None and error > tolerance:
        limit = error
    text = (f"{metric} candidate - serving model: offline {offline:+.4f} (Evaluator, eval "
            f"split) vs online {online:+.4f} (replay, {q['matched']:,} labelled served "
            f"requests), limit ±{limit:.4g} (" + (
                f"the two differences' sampling error, above the tolerance {tolerance:g}"
                if limit != tolerance else f"tolerance {tolerance:g}") + f"): {ev.replay_path}")
    return text if abs(online - offline) <= limit else Failed(text)


def _offline_online_error(diff: dict, trained: dict | None) -> float | None:
    """How far apart two honest measurements of B - A can lie by sampling alone: 1.96
    standard errors of their difference. The online one's error is read from the replay's 95%
    bootstrap interval; the offline one's is the same statistic's at the eval split's size
    (the build record's selection n): standard errors scale as 1/sqrt(n). None when either n
    is unknown."""
    import math

    n_online = diff.get("n")
    n_offline = ((trained or {}).get("selection") or {}).get("n")
    if not n_online or not n_offline or diff.get("low") is None or diff.get("high") is None:
        return None
    se_online = (diff["high"] - diff["low"]) / (2 * 1.96)
    se_offline = se_online * math.sqrt(n_online / n_offline)
    return 1.96 * math.hypot(se_online, se_offline)


def _trained_check(*names: str) -> Callable[[Evidence], str | None]:
    """Evidence from the Trainer's model checks (components/model_checks.py) in the latest
    trained model's build record: automated when all named checks ran and held."""
    def check(ev: Evidence) -> str | None:
        found = {c["check"]: c for c in (ev.trained or {}).get("checks") or []}
        if not all(n in found for n in names):
            return None
        text = "; ".join(found[n]["summary"] for n in names) + f": {ev.trained_path}"
        return text if all(found[n]["passed"] for n in names) else Failed(text)
    return check


def _staleness_known(ev: Evidence) -> str | None:
    """Model 4: the previous blessed model evaluated on the new span (the Evaluator's
    baseline) against what it scored on its own span when it was built."""
    from tandem.components.build_record import RecordError, load_record
    from tandem.pipeline.evaluation import deciding_metric_name

    if not ev.baseline_uri or not ev.trained:
        return None
    now = ev.evaluation_metrics().get(("", "baseline"), {}).get(deciding_metric_name(ev.config))
    try:
        old = load_record(ev.baseline_uri)
    except RecordError:
        return None
    then = old.get("eval_metrics", {}).get(ev.config.deciding_metric)
    if now is None or then is None:
        return None
    created = [dt.datetime.fromisoformat(r["created"]) for r in (old, ev.trained)]
    days = (created[1] - created[0]).total_seconds() / 86400
    spans = (old.get("data", {}).get("span"), ev.trained.get("data", {}).get("span"))
    return (f"the previous blessed model scored {ev.config.deciding_metric} {then:.4f} on its "
            f"own span {spans[0]} and {now:.4f} on this run's span {spans[1]} "
            f"({now - then:+.4f} at {days:.1f} days of age): "
            f"{ev.outputs['evaluation'].uri}")


def _slices(ev: Evidence, groups: list[list[str]], inclusion: bool) -> str | None:
    """Model 6 / Model 7: every slice with at least evaluation.min_slice_size examples
    reaches evaluation.slice_threshold (the SliceGate's rule, on the Evaluator's metrics); for
    inclusion, the best and worst slice also lie within evaluation.max_slice_gap."""
    from tandem.components.slice_gate import describe, judge
    from tandem.pipeline.evaluation import deciding_metric_name, higher_is_better

    e = ev.config.evaluation
    evaluation = ev.outputs.get("evaluation")
    if not groups or e.slice_threshold is None or evaluation is None:
        return None
    name = deciding_metric_name(ev.config)
    higher = higher_is_better(ev.config)
    gap = e.max_slice_gap if inclusion else None
    verdict = judge(ev.evaluation_metrics(), groups, name, higher, e.slice_threshold,
                    e.min_slice_size, gap)
    if not verdict["judged"]:
        return None
    text = describe(verdict, groups, name, e.slice_threshold, e.min_slice_size, gap)
    text += f": {evaluation.uri}"
    return text if verdict["passed"] else Failed(text)


def _metric_families(path: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with open(path) as f:
        return {fam.name: fam for fam in text_string_to_metric_families(f.read())}


# The gateway stages whose time the features that arrive with a request cost: checking them
# against the schema and writing them to the request log. The model's time (parse, Transform,
# inference) is the model's cost, judged by Monitoring 6, and mostly a fixed round trip.
REQUEST_STAGES = ("validate", "log")


def _per_request_seconds(family, label: str) -> dict[str, float]:
    """{label value: mean seconds per observation} of a Prometheus histogram family."""
    sums, counts = {}, {}
    for sample in family.samples if family is not None else []:
        key = sample.labels.get(label)
        if sample.name.endswith("_sum"):
            sums[key] = sample.value
        elif sample.name.endswith("_count"):
            counts[key] = sample.value
    return {k: sums[k] / counts[k] for k in counts if counts[k] and k in sums}


def _request_inputs(ev: Evidence, supplied: set[str]) -> list[str]:
    """The model inputs that arrive with the request: the trained model's non-skipped raw
    features (its build record's Transform plan) that no feature source supplies."""
    plan = ((ev.trained or {}).get("transform") or {}).get("features") or {}
    return sorted(name for name, spec in plan.items()
                  if spec.get("kind") != "skip" and name not in supplied)


def _feature_cost(ev: Evidence) -> str | None:
    """Data 3: each feature source's time per request (the gateway's metrics, scraped by the
    loop), shared among the features it supplies; and the request itself as one more source:
    the time the gateway and the model spend on the model inputs that arrive with each
    request (REQUEST_STAGES), shared among them. None may cost more than the limit."""
    if not ev.gateway_metrics_path:
        return None
    families = _metric_families(ev.gateway_metrics_path)
    per_source = _per_request_seconds(families.get("tandem_gateway_source_seconds"), "table")
    supplied: dict[str, list[str]] = {}
    fam = families.get("tandem_gateway_source_features")
    for sample in fam.samples if fam is not None else []:
        supplied.setdefault(sample.labels["table"], []).append(sample.labels["feature"])
    costs = [(table, per_source[table], sorted(supplied[table]))
             for table in sorted(supplied) if table in per_source]
    stages = _per_request_seconds(families.get("tandem_gateway_stage_seconds"), "stage")
    inputs = _request_inputs(ev, {f for names in supplied.values() for f in names})
    if inputs and all(stage in stages for stage in REQUEST_STAGES):
        costs.append(("the request", sum(stages[s] for s in REQUEST_STAGES), inputs))
    if not costs:
        return None
    limit = ev.config.score.max_feature_cost_ms
    parts, over = [], []
    for source, seconds, names in costs:
        per_request = seconds * 1000
        per_feature = per_request / len(names)
        parts.append(f"{source} {per_request:.3f} ms/request for {len(names)} "
                     f"features ({per_feature:.3f} ms each)")
        if per_feature > limit:
            over += names
    text = f"{'; '.join(parts)}, limit {limit:g} ms per feature"
    if over:
        text += f"; too costly: {', '.join(sorted(over))}"
    text += f": {ev.gateway_metrics_path}"
    return Failed(text) if over else text


def _server_memory(ev: Evidence, versions: tuple[int, int]) -> tuple[float, float] | None:
    """The resident memory each version added as the model server loaded it (bytes), from
    the run's scrape of the server's metrics; None when the run has no such scrape."""
    if not ev.server_metrics_path:
        return None
    fam = _metric_families(ev.server_metrics_path).get("tandem_serving_memory_bytes")
    found = {int(s.labels["version"]): s.value for s in (fam.samples if fam else [])
             if s.labels.get("model") == ev.config.model_name}
    if not all(v in found for v in versions):
        return None
    return found[versions[0]], found[versions[1]]


def _computing_performance(ev: Evidence) -> str | None:
    """Monitoring 6: the newest pushed version's warmup latency against the previous
    version's, measured here in interleaved rounds (pipeline/warmup_latency.py: a latency
    measured at two different times measures the machine), and the resident memory each
    added as the model server loaded it, when the run scraped the server's metrics."""
    from tandem.pipeline import warmup_latency

    push_dir = ev.config.push_dir
    pushed = warmup_latency.versions(push_dir)
    if len(pushed) < 2:
        return None
    old, new = pushed[-2:]
    latency = warmup_latency.compare(push_dir, ev.config.model_name, old, new)
    if latency is None:
        return None
    limit = ev.config.score.max_latency_regression
    text, failed = latency.line(limit), latency.slower(limit)
    memory = _server_memory(ev, (old, new))
    if memory:
        mem_limit = ev.config.score.max_memory_regression
        ratio = memory[1] / max(memory[0], 1.0)
        text += (f"; memory {memory[1] / 2**20:.0f} vs {memory[0] / 2**20:.0f} MiB "
                 f"({ratio:.2f}x, limit {mem_limit:g}x) as the model server loaded each "
                 f"({ev.server_metrics_path})")
        failed = failed or ratio > mem_limit
    text += f": {os.path.join(push_dir, str(new))}"
    return Failed(text) if failed else text


CHECKS: dict[str, Callable[[Evidence], str | None]] = {
    "D1": _schema, "D2": _trained_check("importance"), "D3": _feature_cost,
    "D4": _trained_check("feature_rules"), "D5": _trained_check("privacy"),
    "D7": _trained_check("export_skew", "feature_code"),
    "M2": _offline_online, "M3": _trained_check("tuning"), "M4": _staleness_known,
    "M5": _trained_check("baseline"),
    "M6": lambda ev: _slices(ev, ev.config.evaluation.slices, inclusion=False),
    "M7": lambda ev: _slices(ev, ev.config.evaluation.inclusion, inclusion=True),
    "I1": _trained_check("reproducibility"), "I2": _trained_check("model_spec"),
    "I3": _integration, "I4": _validated_before_serving, "I5": _trained_check("explain"),
    "I6": _canaried, "I7": _rollback, "Mon1": _dependencies, "Mon2": _invariants,
    "Mon3": _skew, "Mon4": _staleness, "Mon5": _trained_check("numerics"),
    "Mon6": _computing_performance, "Mon7": _quality_on_served,
}


def load_reviews(path: str | None) -> dict[str, dict]:
    """Manual evidence: `reviews: [{test, reviewer, date, link, note}]`. An entry without a
    reviewer, a date (a past or present day, YYYY-MM-DD) or a link, or for an unknown test,
    is refused."""
    if not path:
        return {}
    from tandem.schemas.yaml_config import YamlConfigError, read_yaml

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
        out[test] = {**entry, "date": _review_date(entry["date"], f"{where} ({test})")}
    return out


def _review_date(value: Any, where: str) -> str:
    """A review's date as YYYY-MM-DD: a real calendar day, not in the future."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ScoreError(f"{where}: date {value!r} is not a day written YYYY-MM-DD") \
                from None
    if value > dt.datetime.now(dt.timezone.utc).date():
        raise ScoreError(f"{where}: date {value.isoformat()} is in the future; a manual "
                         "point is for a review that happened")
    return value.isoformat()


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
