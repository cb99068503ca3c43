"""The shipped deployment configuration parses as TF Serving reads it."""

import os

from serving.batching import read_batching_parameters
from serving.model_config import monitoring_path, read_config

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")


def test_models_config_is_a_model_server_config():
    config = read_config(os.path.join(DEPLOY, "models.config"))
    names = [m.name for m in config.model_config_list.config]
    assert names == ["listening", "taxi"]
    for model in config.model_config_list.config:
        assert model.base_path == f"/models/{model.name}"
        assert model.model_version_policy.latest.num_versions == 1


def test_monitoring_config_enables_the_prometheus_path():
    path = monitoring_path(os.path.join(DEPLOY, "monitoring.config"))
    assert path == "/monitoring/prometheus/metrics"


def test_batching_config_is_batching_parameters():
    options = read_batching_parameters(os.path.join(DEPLOY, "batching.config"))
    assert options.max_batch_size == 64
    assert options.batch_timeout_micros == 2000
    assert options.num_batch_threads == 4


def test_dockerfile_adds_only_configuration_to_the_stock_image():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM tensorflow/serving:2.16.1"
    instructions = {line.split()[0] for line in lines if line.split()[0].isupper()}
    assert instructions == {"FROM", "COPY", "CMD"}
