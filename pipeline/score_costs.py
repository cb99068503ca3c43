"""`tandem score`: the two tests of what serving costs, read from the run's scrapes of the
gateway's and the model server's Prometheus metrics (Data 3: feature cost; Monitoring 6:
computing performance).
"""

from __future__ import annotations

import os

from tandem.pipeline.score_evidence import Evidence, Failed


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


def feature_cost(ev: Evidence) -> str | None:
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


def computing_performance(ev: Evidence) -> str | None:
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
