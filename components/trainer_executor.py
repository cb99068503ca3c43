"""Trainer executor: the stock generic Trainer, plus the model build record in ML Metadata.

It hands the data span to run_fn (which only sees file paths) and, after training, copies the
build record run_fn wrote into custom properties of the Model artifact, so lineage queries
see the same values as `tandem model inspect`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from tandem.components import build_record
from tandem.components import tfx_api as tfx


class TrainerExecutor(trainer_executor.GenericExecutor):
    def Do(
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        examples = input_dict[standard_component_specs.EXAMPLES_KEY][0]
        custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        # ExampleGen records span and input fingerprint as custom properties.
        custom["data_span"] = (
            examples.get_int_custom_property("span")
            if examples.has_custom_property("span") else None
        )
        custom["data_fingerprint"] = (
            examples.get_string_custom_property("input_fingerprint")
            if examples.has_custom_property("input_fingerprint") else None
        )
        # LogExampleGen records the log files and labels the span was joined from.
        custom["data_source"] = (
            json.loads(examples.get_string_custom_property("tandem.source"))
            if examples.has_custom_property("tandem.source") else None
        )
        exec_properties = dict(exec_properties)
        exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY] = json.dumps(custom)
        super().Do(input_dict, output_dict, exec_properties)

        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        serving_dir = path_utils.serving_model_path(model.uri)
        record = build_record.load_record(serving_dir)
        for check in record.get("checks") or []:
            model.set_string_custom_property(
                f"tandem.check.{check['check']}",
                f"{'passed' if check['passed'] else 'FAILED'}: {check['summary']}")
        record = {k: v for k, v in record.items() if k != "checks"}
        for key, value in build_record.flatten(record).items():
            if key.startswith("libraries.") or key.startswith("hyperparameters."):
                continue
            name = f"tandem.{key}"
            if isinstance(value, bool) or value is None:
                model.set_string_custom_property(name, str(value))
            elif isinstance(value, int):
                model.set_int_custom_property(name, value)
            elif isinstance(value, float):
                model.set_float_custom_property(name, value)
            else:
                model.set_string_custom_property(name, str(value))
        model.set_string_custom_property(
            "tandem.build_record", os.path.join(serving_dir, build_record.ASSETS_EXTRA,
                                                build_record.RECORD_FILE)
        )


class Trainer(tfx.components.Trainer):
    """TFX's generic Trainer (same name, inputs, outputs and id) run by TrainerExecutor, as a
    subclass: the `custom_executor_spec` argument is deprecated and says so on every run."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)
