"""Per-slice quality (Model 6, 7 of the ML Test Score): a gate after the Evaluator.

Every slice of `evaluation.slices` and `evaluation.inclusion` with at least
`evaluation.min_slice_size` examples must reach `evaluation.slice_threshold` on the deciding
metric; for the inclusion slices, the best and the worst must also lie within
`evaluation.max_slice_gap`. Slices below the threshold are named.

This reads the Evaluator's own metrics rather than putting the bound into TFMA's per-slice
thresholds: TFMA's `min_slice_size` drops a small slice's metrics, and its validator then
counts every threshold that slice did not meet as a failure, so a handful of examples from
one country would veto a model. `tandem score` judges the same metrics with the same function.
"""

import json
from typing import Any

from tfx import v1 as tfx


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


def judge(metrics: dict, groups: list[list[str]], metric: str, higher: bool,
          threshold: float, min_size: int, max_gap: float | None = None) -> dict[str, Any]:
    """The verdict on the slices of `groups`: judged (slice -> value, n), too small, failed,
    and for inclusion (`max_gap` set) the gap between the best and the worst."""
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
        judged[name] = (values[metric], n)
    failed = sorted(s for s, (v, _) in judged.items()
                    if (v < threshold if higher else v > threshold))
    out = {"judged": judged, "small": small, "failed": failed, "gap": None}
    if max_gap is not None and judged:
        values = [v for v, _ in judged.values()]
        out["gap"] = max(values) - min(values)
    out["passed"] = not failed and (out["gap"] is None or out["gap"] <= max_gap)
    return out


def describe(verdict: dict, groups: list[list[str]], metric: str, threshold: float,
             min_size: int, max_gap: float | None = None) -> str:
    judged = verdict["judged"]
    if not judged:
        return (f"no slice of {', '.join('/'.join(g) for g in groups)} has {min_size} "
                "examples: nothing judged")
    worst = min(judged, key=lambda s: judged[s][0])
    text = (f"{len(judged)} slices of {', '.join('/'.join(g) for g in groups)} with >= "
            f"{min_size} examples against {metric} {threshold:g} (lowest {worst} "
            f"{judged[worst][0]:.4f}, n={judged[worst][1]}; {len(verdict['small'])} smaller "
            "not judged)")
    if verdict["failed"]:
        text += "; below the threshold: " + ", ".join(
            f"{s} {judged[s][0]:.4f}" for s in verdict["failed"])
    if max_gap is not None and verdict["gap"] is not None:
        text += f"; gap between slices {verdict['gap']:.4f} (limit {max_gap:g})"
    return text


class SlicesFailed(RuntimeError):
    """Raised by the slice gate; the message names the slices."""


@tfx.dsl.components.component
def SliceGate(
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    settings: tfx.dsl.components.Parameter[str],
) -> None:
    """Fail when a large enough slice is below the slice threshold, or the inclusion slices
    are further apart than the gap allows; the Pusher waits on this gate."""
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
