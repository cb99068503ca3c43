"""`tandem score`: the automated checks, one per test of the rubric that a run can show.

Each check reads the Evidence and returns the evidence text when the test holds, a Failed
text when it ran and did not hold, or None when the run holds no evidence for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from tandem.pipeline.score_costs import computing_performance, feature_cost
from tandem.pipeline.score_evidence import Evidence, Failed


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


CHECKS: dict[str, Callable[[Evidence], str | None]] = {
    "D1": _schema, "D2": _trained_check("importance"), "D3": feature_cost,
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
    "Mon6": computing_performance, "Mon7": _quality_on_served,
}
