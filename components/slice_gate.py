"""Per-slice quality (Model 6, 7 of the ML Test Score): a gate after the Evaluator.

Every slice of `evaluation.slices` and `evaluation.inclusion` with at least
`evaluation.min_slice_size` examples must reach `evaluation.slice_threshold` on the deciding
metric; an inclusion slice must also not trail the overall metric by more than
`evaluation.max_slice_gap`. Both are judged beyond each slice's sampling error (a few hundred
examples move an AUC by several points), so a slice fails only when it is clearly short.
Slices that fail are named.

This reads the Evaluator's own metrics rather than putting the bound into TFMA's per-slice
thresholds: TFMA's `min_slice_size` drops a small slice's metrics, and its validator then
counts every threshold that slice did not meet as a failure, so a handful of examples from
one country would veto a model. `tandem score` judges the same metrics with the same function.
"""

import json
from typing import Any

from tandem.components import tfx_api as tfx


def slice_name(slice_key) -> str:
    parts = []
    for k in slice_key.single_slice_keys:
        value = getattr(k, k.WhichOneof("kind")) if k.WhichOneof("kind") else ""
        parts.append(f"{k.column}={value.decode() if isinstance(value, bytes) else value}")
    return ",".join(parts)


def evaluation_metrics(uri: str) -> dict:
    """{(slice, model): {metric: value}} of a TFMA evaluation; slice '' is overall, else
    'feature=value[,feature=value]'; model is candidate, baseline or diff."""
    import tensorflow_model_analysis as tfma

    out: dict = {}
    for slice_metrics in tfma.load_metrics(uri):
        name = slice_name(slice_metrics.slice_key)
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.HasField("sub_key"):
                continue
            model = "diff" if kv.key.is_diff else (
                "baseline" if kv.key.model_name == "baseline" else "candidate")
            if kv.value.HasField("double_value"):
                out.setdefault((name, model), {})[kv.key.name] = kv.value.double_value.value
    return out


Z = 1.96  # two-sided 95%


def standard_error(metric: str, value: float, n: int, mean_label: float | None) -> float:
    """The sampling error of a slice's metric: Hanley and McNeil's for AUC (positives and
    negatives from the slice's mean label), the binomial one for accuracy; 0 otherwise."""
    if n <= 0:
        return float("inf")
    if metric == "auc":
        share = 0.5 if mean_label is None else min(max(mean_label, 0.0), 1.0)
        pos, neg = max(share * n, 1.0), max((1 - share) * n, 1.0)
        q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
        var = (value * (1 - value) + (pos - 1) * (q1 - value * value)
               + (neg - 1) * (q2 - value * value)) / (pos * neg)
        return max(var, 0.0) ** 0.5
    if "accuracy" in metric:
        return (max(value * (1 - value), 0.0) / n) ** 0.5
    return 0.0


def judge(metrics: dict, groups: list[list[str]], metric: str, higher: bool,
          threshold: float, min_size: int, max_gap: float | None = None) -> dict[str, Any]:
    """The verdict on the slices of `groups` with at least `min_size` examples.

    A slice fails when it is below the threshold beyond its sampling error (its 95% bound
    on the good side is still on the bad side). For inclusion (`max_gap` set), a slice is
    behind when it trails the overall metric by more than `max_gap`, again beyond its error;
    the largest gap is reported either way. Small slices are listed, not judged; when no
    slice is judged the verdict fails (closed)."""
    shapes = {tuple(sorted(g)) for g in groups}
    judged, small = {}, []
    for (name, model), values in sorted(metrics.items()):
        if not name or model != "candidate" or metric not in values:
            continue
        columns = tuple(sorted(p.split("=", 1)[0] for p in name.split(",")))
        if columns not in shapes:
            continue
        n = int(values.get("example_count", 0))
        if n < min_size:
            small.append(name)
            continue
        v = values[metric]
        judged[name] = (v, n, standard_error(metric, v, n, values.get("mean_label")))
    sign = 1.0 if higher else -1.0
    failed = sorted(s for s, (v, _, se) in judged.items()
                    if sign * (v - threshold) + Z * se < 0)
    out = {"judged": judged, "small": small, "failed": failed, "gap": None, "behind": [],
           "higher": higher}
    overall = metrics.get(("", "candidate"), {}).get(metric)
    if max_gap is not None and judged and overall is not None:
        gaps = {s: sign * (overall - v) for s, (v, _, _) in judged.items()}
        out["gap"] = max(gaps.values())
        out["behind"] = sorted(s for s, g in gaps.items() if g - Z * judged[s][2] > max_gap)
    # A gate that judged nothing fails closed: a mistyped metric or slice feature, or slices
    # all too small to judge, must not pass a model silently.
    out["passed"] = bool(judged) and not failed and not out["behind"]
    return out


def describe(verdict: dict, groups: list[list[str]], metric: str, threshold: float,
             min_size: int, max_gap: float | None = None) -> str:
    judged = verdict["judged"]
    if not judged:
        found = f"{len(verdict['small'])} smaller ones" if verdict["small"] else \
            f"no {metric} for any slice of them in the evaluation"
        return (f"no slice of {', '.join('/'.join(g) for g in groups)} with >= {min_size} "
                f"examples ({found}): nothing judged, so the gate fails closed")
    # The worst slice: the lowest AUC or accuracy, the highest error.
    pick = min if verdict.get("higher", True) else max
    worst = pick(judged, key=lambda s: judged[s][0])
    v, n, se = judged[worst]
    text = (f"{len(judged)} slices of {', '.join('/'.join(g) for g in groups)} with >= "
            f"{min_size} examples against {metric} {threshold:g} (worst {worst} {v:.4f} "
            f"± {Z * se:.4f}, n={n}; {len(verdict['small'])} smaller not judged)")
    if verdict["failed"]:
        text += "; below the threshold: " + ", ".join(
            f"{s} {judged[s][0]:.4f}" for s in verdict["failed"])
    if max_gap is not None and verdict["gap"] is not None:
        text += f"; largest gap behind overall {verdict['gap']:.4f} (limit {max_gap:g}"
        text += "; no slice behind by more, beyond its sampling error)" if not \
            verdict["behind"] else f"): behind beyond sampling error: " \
            f"{', '.join(verdict['behind'])}"
    return text


class SlicesFailed(RuntimeError):
    """Raised by the slice gate; the message names the slices."""


@tfx.dsl.components.component
def SliceGate(
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    settings: tfx.dsl.components.Parameter[str],
) -> None:
    """Fail when a large enough slice is below the slice threshold, or an inclusion slice
    trails the overall metric by more than the gap allows; the Pusher waits on this gate."""
    s = json.loads(settings)
    metrics = evaluation_metrics(evaluation.uri)
    problems = []
    for groups, gap, what in ((s["slices"], None, "slices"),
                              (s["inclusion"], s["max_gap"], "inclusion slices")):
        if not groups:
            continue
        verdict = judge(metrics, groups, s["metric"], s["higher"], s["threshold"],
                        s["min_size"], gap)
        if not verdict["passed"]:
            problems.append(f"{what}: " + describe(verdict, groups, s["metric"],
                                                   s["threshold"], s["min_size"], gap))
    if problems:
        raise SlicesFailed("; ".join(problems))
