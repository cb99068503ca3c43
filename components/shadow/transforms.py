"""Shadow replay: the Beam transforms (read the request log, run both models in batches).

Heavy resources (the two SavedModels) are loaded in `setup()`, once per worker.
"""

from __future__ import annotations

import time
from typing import Any

import apache_beam as beam
import numpy as np

from schemas.contracts import EXAMPLES_INPUT, SERVING_DEFAULT
from schemas.request_log import PRIMARY, ReadStats, read_records

OUTPUT_KEYS = ("probabilities", "scores", "predictions", "outputs")
STATS = "stats"


def output_key(outputs) -> str:
    """The output compared: a binary probability, class scores, or a regression value."""
    for key in OUTPUT_KEYS:
        if key in outputs:
            return key
    return sorted(outputs)[0]


def _values(tensor_proto) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(tensor_proto)


class ReadLoggedExamples(beam.DoFn):
    """One log file -> one element per logged example of model A's answered requests:
    (example id, serialized example, A's logged output row, the version that answered).
    Shadow records, refused and failed requests are skipped; damage is counted."""

    def process(self, path: str):
        stats = ReadStats()
        skipped = {"shadow_records": 0, "failed_requests": 0, "rejected_requests": 0}
        for record in read_records(path, stats, files=[path]):
            if record.role != PRIMARY:
                skipped["shadow_records"] += 1
                continue
            if record.error:
                skipped["failed_requests"] += 1
                continue
            if record.verdict.get("rejected"):
                skipped["rejected_requests"] += 1
                continue
            examples = record.examples()
            outputs = record.log.predict_log.response.outputs
            if not outputs or len(examples) != len(record.example_ids):
                skipped["failed_requests"] += 1
                continue
            logged = _values(outputs[output_key(outputs)])
            for i, (example_id, data) in enumerate(zip(record.example_ids, examples,
                                                       strict=True)):
                yield example_id, data, logged[i], record.model_version
        yield beam.pvalue.TaggedOutput(STATS, {
            "files": stats.files, "records": stats.records, "torn": stats.torn,
            "corrupt": stats.corrupt, "unreadable": stats.unreadable, **skipped})


class PredictBoth(beam.DoFn):
    """A batch of logged examples -> rows with A's logged output, A's output recomputed
    offline and B's output, in one pass. Both models run in-process on the whole batch."""

    def __init__(self, baseline: str, candidate: str, slice_features: list[str]):
        self.baseline, self.candidate, self.slice_features = baseline, candidate, slice_features

    def setup(self) -> None:
        import os

        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        self._tf = tf
        self._a = tf.saved_model.load(self.baseline).signatures[SERVING_DEFAULT]
        self._b = tf.saved_model.load(self.candidate).signatures[SERVING_DEFAULT]

    def _run(self, fn, batch) -> tuple[dict[str, np.ndarray], float]:
        start = time.perf_counter()
        out = fn(**{EXAMPLES_INPUT: batch})
        return {k: v.numpy() for k, v in out.items()}, time.perf_counter() - start

    def process(self, elements: list[tuple]):
        from tensorflow.core.example import example_pb2

        tf = self._tf
        batch = tf.constant([e[1] for e in elements])
        a, a_s = self._run(self._a, batch)
        b, b_s = self._run(self._b, batch)
        key = output_key(a)
        yield beam.pvalue.TaggedOutput(STATS, {"batches": 1, "examples": len(elements),
                                               "a_seconds": a_s, "b_seconds": b_s})
        for i, (example_id, data, logged, version) in enumerate(elements):
            slices: dict[str, Any] = {}
            if self.slice_features:
                features = example_pb2.Example.FromString(data).features.feature
                for name in self.slice_features:
                    f = features[name] if name in features else None
                    kind = f.WhichOneof("kind") if f is not None else None
                    value = getattr(f, kind).value[0] if kind and getattr(f, kind).value else None
                    slices[name] = value.decode() if isinstance(value, bytes) else value
            yield {"id": example_id, "data": data, "version": version, "slices": slices,
                   "key": key,
                   "logged": np.asarray(logged, np.float64).tolist(),
                   "a": np.asarray(a[key][i], np.float64).tolist(),
                   "b": np.asarray(b[key][i], np.float64).tolist()}
