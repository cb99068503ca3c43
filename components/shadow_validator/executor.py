"""ShadowValidator's executor: run the replay, write the blessing."""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import import_utils, path_utils

BLESSED, NOT_BLESSED = "SHADOW_BLESSED", "SHADOW_NOT_BLESSED"


def _model_dir(artifacts: list) -> str:
    """A Trainer's Model artifact keeps the SavedModel under Format-Serving; an imported one
    (a pushed version directory, or the base holding versions) is the directory itself."""
    uri = artifact_utils.get_single_uri(artifacts)
    serving = path_utils.serving_model_dir(uri)
    return serving if tf.io.gfile.exists(serving) else uri


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list],
           exec_properties: dict[str, Any]) -> None:
        from tandem.components.shadow.replay import REPORT, replay_config_from_text, run_replay

        config = replay_config_from_text(exec_properties.get("config"))
        render = exec_properties.get("render")
        if render:  # the page's renderer, by dotted name (pipeline/traffic_checks.py)
            render = import_utils.import_func_from_module(*render.rsplit(".", 1))
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        logs = artifact_utils.get_single_uri(input_dict["request_logs"])
        report = run_replay(logs, _model_dir(input_dict["baseline_model"]),
                            _model_dir(input_dict["candidate_model"]), blessing.uri, config,
                            self._beam_pipeline_args or None, render=render or None)
        passed = bool(report["verdict"]["passed"])
        with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED if passed else NOT_BLESSED),
                               "w") as out:
            out.write(json.dumps(report["verdict"], sort_keys=True))
        blessing.set_int_custom_property("blessed", int(passed))
        blessing.set_string_custom_property("report", os.path.join(blessing.uri, REPORT))
