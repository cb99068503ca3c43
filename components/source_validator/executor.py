"""SourceValidator's executor: replay the logs re-decorated from the candidate snapshot, write
the blessing."""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import import_utils

from tandem.components.shadow_validator.executor import _model_dir

BLESSED, NOT_BLESSED = "SOURCE_BLESSED", "SOURCE_NOT_BLESSED"


def _function(dotted: str):
    return import_utils.import_func_from_module(*dotted.rsplit(".", 1))


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list],
           exec_properties: dict[str, Any]) -> None:
        from tandem.components.shadow.features_replay import run_features_replay
        from tandem.components.shadow.replay import REPORT, replay_config_from_text

        config = replay_config_from_text(exec_properties.get("config"))
        # The re-decoration is the gateway's (serving/), handed over by name as the page's
        # renderer is (pipeline/feature_checks.py), so components/ never imports serving/.
        redecorator, spec, sources = _function(exec_properties["prepare"])(
            exec_properties["gateway_config"], exec_properties["candidate_features"])
        render = exec_properties.get("render")
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        logs = artifact_utils.get_single_uri(input_dict["request_logs"])
        report = run_features_replay(
            logs, _model_dir(input_dict["baseline_model"]),
            _model_dir(input_dict["candidate_model"]), blessing.uri, redecorator, spec,
            sources, config, beam_args=self._beam_pipeline_args or None,
            render=_function(render) if render else None)
        passed = bool(report["verdict"]["passed"])
        with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED if passed else NOT_BLESSED),
                               "w") as out:
            out.write(json.dumps(report["verdict"], sort_keys=True))
        blessing.set_int_custom_property("blessed", int(passed))
        blessing.set_string_custom_property("snapshot", sources["candidate"])
        blessing.set_string_custom_property(
            "blamed", ",".join(report.get("features", {}).get("blamed", [])))
        blessing.set_string_custom_property("report", os.path.join(blessing.uri, REPORT))
