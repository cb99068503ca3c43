"""Evaluator baseline: the latest blessed model other than the candidate being evaluated.

TFX's LatestBlessedModelStrategy runs before the Trainer and knows nothing of the candidate,
so a rerun on unchanged inputs (Trainer served from the cache, its model already blessed)
evaluates the model against itself, re-blesses it and pushes it again. Excluding the candidate
keeps a rerun's Evaluator and Pusher inputs identical to the first run's, so TFX's cache serves
them, while a new candidate is still compared with the latest blessed model.
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.common import resolver

BLESSED = "blessed"
CURRENT_MODEL_ID = "current_model_id"


class LatestBlessedBaselineStrategy(resolver.ResolverStrategy):
    """Inputs: `model` (all Models), `model_blessing` (all ModelBlessings), `candidate`
    (the Trainer's output). Outputs the baseline `model` and its `model_blessing`."""

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[Any]]):
        candidates = {a.id for a in input_dict.get("candidate", [])}
        blessed = {
            b.get_int_custom_property(CURRENT_MODEL_ID): b
            for b in input_dict.get("model_blessing", [])
            if b.get_int_custom_property(BLESSED) == 1
        }
        for model in sorted(input_dict.get("model", []), key=lambda a: a.id, reverse=True):
            if model.id in blessed and model.id not in candidates:
                return {"model": [model], "model_blessing": [blessed[model.id]],
                        "candidate": input_dict.get("candidate", [])}
        return {"model": [], "model_blessing": [], "candidate": input_dict.get("candidate", [])}
