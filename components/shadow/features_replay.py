"""Shadow replay with candidate features: the logged traffic decorated again from a candidate
feature-source snapshot, to see what the snapshot would change before the gateway serves it.

It is the replay (components/shadow/replay.py) with another answering step: A is model A on
the logged example (so the parity check still holds A to what it answered), B is model B on
the example re-decorated from the candidate snapshot (B may be A: the snapshot alone changes).
Everything the replay reports follows (flip rates and |Δ| with intervals, slices, labels,
the gate), and this module adds the `features` section:

- how many requests the candidate re-decorated differently, per joined column;
- attribution: for each divergent request (|B - A| > DIVERGED), each changed column is swapped
  in alone (the logged example with only that column from the candidate) and B run again (a
  request where one column alone changed needs no second run: B already answered that swap); a
  column's share is the sum of its solo effects over the sum of |B - A|, so one bad column is
  named alone and a model change shows as its own share (B on the logged example against A);
  shares need not add up to 1 when columns interact;
- entities the candidate lacks though the serving snapshot has them (`missing`), gated by
  `thresholds.max_missing_entities`; those both lack (`unknown`) were already served with
  defaults and are only counted.

The re-decoration itself is the gateway's (serving/redecorate.py); this job takes it as a
factory from its caller, as it takes its page's renderer, so components/ never imports
serving/.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import numpy as np

from tandem.components.shadow.compare import Thresholds
from tandem.components.shadow.transforms import STATS, PredictBoth, class_names
from tandem.schemas.contracts import output_key

DIVERGED = 1e-6  # |B - A| above which a request counts as divergent and is attributed
SECTION = "features"


def _deltas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(b - a).reshape(len(a), -1).max(axis=1)


def _slices(data: list[bytes], names: list[str]) -> dict[str, list]:
    """Each slice feature's first value per example (as PredictBoth slices)."""
    from tensorflow.core.example import example_pb2

    slices: dict[str, list] = {name: [] for name in names}
    if not names:
        return slices
    for serialized in data:
        features = example_pb2.Example.FromString(serialized).features.feature
        for name in names:
            f = features[name] if name in features else None
            kind = f.WhichOneof("kind") if f is not None else None
            value = getattr(f, kind).value[0] if kind and getattr(f, kind).value else None
            slices[name].append(value.decode() if isinstance(value, bytes) else value)
    return slices


class PredictRedecorated(PredictBoth):
    """A chunk of logged examples -> A on them, B on them re-decorated from the candidate
    snapshot, and the attribution of each divergent request to the columns that changed."""

    def __init__(self, baseline: str, candidate: str, slice_features: list[str],
                 batch_size: int = 1024, redecorator: Callable[..., Any] | None = None,
                 spec: Any = None):
        super().__init__(baseline, candidate, slice_features, batch_size)
        self.redecorator, self.spec = redecorator, spec
        self.same_model = baseline == candidate

    def setup(self) -> None:
        super().setup()
        self._redecorate = self.redecorator(self.spec)

    def teardown(self) -> None:
        redecorate = getattr(self, "_redecorate", None)
        if redecorate is not None:
            redecorate.close()
        super().teardown()

    def _outputs(self, fn, data: list[bytes]) -> tuple[np.ndarray, float, dict | None]:
        parts, seconds, first = [], 0.0, None
        for start in range(0, len(data), self.batch_size):
            out, t = self._run(fn, data[start:start + self.batch_size])
            if first is None:
                first = out
            parts.append(out[output_key(out)].reshape(len(out[output_key(out)]), -1))
            seconds += t
        return np.concatenate(parts).astype(np.float64), seconds, first

    def process(self, chunk):
        ids, data, logged, versions = chunk
        started = time.perf_counter()
        r = self._redecorate.redecorate(data)
        redecorate_s = time.perf_counter() - started
        a, a_s, a_out = self._outputs(self._a, data)
        b, b_s, b_out = self._outputs(self._b, r.data)
        key = output_key(a_out)
        n = len(ids)
        delta = _deltas(a, b)
        divergent = np.flatnonzero(delta > DIVERGED)
        started = time.perf_counter()
        effects: dict[str, np.ndarray] = {}
        model = np.zeros(n)
        if len(divergent):
            logged_div = [data[i] for i in divergent]
            # B on the logged example: what the model change alone does (nothing if B is A).
            base = a[divergent] if self.same_model else self._outputs(self._b, logged_div)[0]
            model[divergent] = _deltas(a[divergent], base)
            for column in self._redecorate.columns:
                rows = [k for k, i in enumerate(divergent) if column in r.changed[i]]
                if not rows:
                    continue
                effect = np.zeros(n)
                # Where this column alone changed, the swap is the re-decoration itself: its
                # solo effect is B's answer already computed. The others run B again.
                alone = [k for k in rows if r.changed[divergent[k]] == (column,)]
                if alone:
                    effect[divergent[alone]] = _deltas(base[alone], b[divergent[alone]])
                others = [k for k in rows if r.changed[divergent[k]] != (column,)]
                if others:
                    swapped = self._redecorate.swap([logged_div[k] for k in others], column)
                    solo = self._outputs(self._b, swapped)[0]
                    effect[divergent[others]] = _deltas(base[others], solo)
                effects[column] = effect
        attribution_s = time.perf_counter() - started
        batches = -(-n // self.batch_size)
        yield beam.pvalue.TaggedOutput(STATS, {
            "batches": batches, "examples": n, "a_seconds": a_s, "b_seconds": b_s,
            "redecorate_seconds": redecorate_s, "attribution_seconds": attribution_s})
        yield {"ids": ids, "data": r.data, "versions": versions,
               "slices": _slices(data, self.slice_features), "key": key,
               "classes": (class_names(a_out, key), class_names(b_out, key)),
               "logged": logged, "a": a, "b": b,
               # what the `features` section is built from
               "changed": r.changed, "missing": r.missing, "unknown": r.unknown,
               "delta": delta, "effects": effects, "model_delta": model,
               "columns": list(self._redecorate.columns)}


def _round(x: float) -> float:
    return float(round(float(x), 6))


def features_section(chunks: list[dict], thresholds: Thresholds, sources: dict[str, str]
                     ) -> tuple[str, dict, list[dict]]:
    """The `features` section of the report and its gate check (module docstring)."""
    columns = chunks[0]["columns"] if chunks else []
    n = sum(len(c["ids"]) for c in chunks)
    delta = np.concatenate([c["delta"] for c in chunks]) if chunks else np.zeros(0)
    divergent = delta > DIVERGED
    total = float(delta[divergent].sum())
    changed = {col: 0 for col in columns}
    changed_divergent = {col: 0 for col in columns}
    effect = {col: 0.0 for col in columns}
    model = 0.0
    redecorated = missing = unknown = 0
    for c in chunks:
        div = c["delta"] > DIVERGED
        for i, cols in enumerate(c["changed"]):
            redecorated += bool(cols)
            for col in cols:
                changed[col] += 1
                changed_divergent[col] += bool(div[i])
        missing += sum(c["missing"])
        unknown += sum(c["unknown"])
        model += float(c["model_delta"][div].sum())
        for col, e in c["effects"].items():
            effect[col] += float(e.sum())
    share = {col: _round(effect[col] / total) if total else 0.0 for col in columns}
    ranked = sorted(columns, key=lambda col: (-share[col], col))
    section = {
        **sources,
        "requests": n, "redecorated_differently": redecorated,
        "divergent": int(divergent.sum()), "divergence_threshold": DIVERGED,
        "missing_entities": missing, "unknown_entities": unknown,
        "columns": {col: {"changed": changed[col], "changed_divergent": changed_divergent[col],
                          "share": share[col],
                          "mean_effect": _round(effect[col] / changed_divergent[col])
                          if changed_divergent[col] else 0.0} for col in columns},
        "model_share": _round(model / total) if total else 0.0,
        "blamed": [col for col in ranked if share[col] >= 0.1],
    }
    checks = []
    if thresholds.max_missing_entities is not None:
        checks.append({"check": "missing entities (in the serving snapshot, not the candidate)",
                       "value": missing, "limit": thresholds.max_missing_entities,
                       "passed": missing <= thresholds.max_missing_entities})
    return SECTION, section, checks


def run_features_replay(logs: str, baseline: str, candidate: str, out_dir: str,
                        redecorator: Callable[..., Any], spec: Any, sources: dict[str, str],
                        config=None, **kwargs) -> dict:
    """The replay with B answering on examples re-decorated by `redecorator(spec)` (a
    serving/redecorate.py Redecorator, made on each worker); `sources` names the serving and
    candidate snapshots in the report. kwargs: run_replay's (beam_args, labels, render)."""
    from tandem.components.shadow.replay import ReplayConfig, run_replay

    config = config or ReplayConfig()
    predict = functools.partial(PredictRedecorated, redecorator=redecorator, spec=spec)
    section = functools.partial(features_section, thresholds=config.thresholds,
                                sources=sources)
    return run_replay(logs, baseline, candidate, out_dir, config, predict=predict,
                      section=section, **kwargs)


def summary(report: dict) -> list[str]:
    """The terminal lines of the `features` section."""
    f = report.get(SECTION)
    if not f:
        return []
    lines = [f"features: {f['candidate']} in place of {f['serving']}: "
             f"{f['redecorated_differently']:,} of {f['requests']:,} requests decorated "
             f"differently, {f['divergent']:,} divergent; {f['missing_entities']:,} entities "
             f"missing from the candidate ({f['unknown_entities']:,} unknown to both)"]
    for col, m in sorted(f["columns"].items(), key=lambda kv: -kv[1]["share"]):
        if m["changed"]:
            lines.append(f"  {col:<22} changed in {m['changed']:,} requests, explains "
                         f"{m['share']:.1%} of the divergence")
    if f["model_share"]:
        lines.append(f"  {'(the model change)':<22} explains {f['model_share']:.1%}")
    return lines
