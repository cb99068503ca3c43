"""Monitor: the model's logged answers as columns, so their drift is judged as a feature's is.

A model's inputs can stay put while its answers move (a new model version, a feature source
that changed meaning, a shift the features do not show), and for a while the answers are the
only sign of it: labels come later. So each window's answers get TFDV statistics of their
own, and the same measures and false-discovery control as the features (components/monitor/
drift.py). What a window's answers are depends on the pipeline config's problem type:

- regression: `prediction`, the value;
- classification: `predicted_class`, the top class's name (the `classes` output, else the
  score's position), and each class's score `score[<class>]`; for two classes only the
  second's, the probability of the positive class (the other is one minus it).

The answer is read as the log holds it, whichever API was called
(`tandem.schemas.request_log.LogRecord.outputs`): a Predict response, a Classify response's classes
and scores, a Regress response's values. An answer that does not fit the problem type (a
regression config over a classifier's log) is counted, not guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PREDICTION, PREDICTED_CLASS = "prediction", "predicted_class"
REGRESSION_KEYS = ("predictions", "outputs")  # serving_default's and Regress's names


def score_column(name: str) -> str:
    return f"score[{name}]"


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def answer_columns(outputs: Mapping[str, Any], problem_type: str,
                   n: int) -> dict[str, list] | None:
    """The answer columns of one logged response with `n` examples, or None when the
    response holds no answer of this problem type for each of them."""
    if problem_type == "regression":
        key = next((k for k in REGRESSION_KEYS if k in outputs), None)
        if key is None:
            return None
        values = np.asarray(outputs[key], np.float64).reshape(-1)
        return {PREDICTION: values.tolist()} if len(values) == n else None
    if "scores" in outputs:
        scores = np.asarray(outputs["scores"], np.float64)
    elif "probabilities" in outputs:
        p = np.asarray(outputs["probabilities"], np.float64).reshape(-1)
        scores = np.stack([1.0 - p, p], axis=1)
    else:
        return None
    if scores.ndim != 2 or scores.shape[0] != n or scores.shape[1] < 2:
        return None
    k = scores.shape[1]
    names = np.asarray(outputs["classes"]) if "classes" in outputs else None
    if names is None or names.shape != scores.shape:
        names = np.tile(np.array([str(i) for i in range(k)], dtype=object), (n, 1))
    top = scores.argmax(axis=1)
    columns: dict[str, list] = {PREDICTED_CLASS: [_text(names[i, top[i]]).encode()
                                                  for i in range(n)]}
    first = [_text(c) for c in names[0]]
    for j in ([1] if k == 2 else range(k)):
        columns[score_column(first[j])] = scores[:, j].tolist()
    return columns


class AnswerColumns:
    """A window's answers so far, column by column (a column one record lacks is None for
    its rows), until they become one RecordBatch."""

    def __init__(self):
        self.rows = 0
        self.columns: dict[str, list] = {}

    def add(self, columns: dict[str, list]) -> None:
        n = len(next(iter(columns.values())))
        for name in self.columns.keys() - columns.keys():
            self.columns[name].extend([None] * n)
        for name, values in columns.items():
            self.columns.setdefault(name, [None] * self.rows).extend(values)
        self.rows += n

    def record_batch(self):
        """The columns as TFDV reads examples: a list of one value per row, None when
        absent."""
        import pyarrow as pa

        names = sorted(self.columns)
        arrays = [pa.array([None if v is None else [v] for v in self.columns[name]],
                           type=pa.large_list(pa.large_binary() if name == PREDICTED_CLASS
                                              else pa.float32()))
                  for name in names]
        return pa.RecordBatch.from_arrays(arrays, names)
