"""The shipped deployment configuration parses as TF Serving reads it."""

import os

from tandem.serving.model_server.batching import read_batching_parameters
from tandem.serving.model_server.model_config import monitoring_path, read_config

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


def _dockerfile_flags() -> list[str]:
    import json
    import re

    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    cmd = re.search(r"^CMD (\[.*?\])", text, re.S | re.M).group(1)
    return json.loads(cmd.replace("\\\n", ""))


def test_kubernetes_manifests_and_the_dockerfile_agree():
    """The Deployment runs the server with the Dockerfile's flags, every /config file a flag
    names is in the ConfigMap, and the ConfigMap holds exactly the files in deploy/."""
    import yaml
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(DEPLOY, "k8s", "deployment.yaml")) as f:
        deployment = yaml.safe_load(f)
    with open(os.path.join(DEPLOY, "k8s", "configmap.yaml")) as f:
        configmap = yaml.safe_load(f)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert sorted(container["args"]) == sorted(_dockerfile_flags())
    # After `tandem promote` models.config holds labels; without this flag a fresh stock pod
    # refuses to start on it.
    assert "--allow_version_labels_for_unavailable_models=true" in container["args"]
    files = {arg.split("=", 1)[1][len("/config/"):] for arg in container["args"]
             if "=/config/" in arg}
    assert files == {"models.config", "monitoring.config", "batching.config"}
    assert set(configmap["data"]) == files
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]

    def parsed(name, message):
        from_map = text_format.Parse(configmap["data"][name], message())
        with open(os.path.join(DEPLOY, name)) as f:
            return from_map, text_format.Parse(f.read(), message())

    a, b = parsed("models.config", model_server_config_pb2.ModelServerConfig)
    assert a == b and [m.name for m in a.model_config_list.config] == ["listening", "taxi"]
    # The wheel ships no proto for these two: compare their text, comments aside.
    for name in ("monitoring.config", "batching.config"):
        with open(os.path.join(DEPLOY, name)) as f:
            words = [w for line in f if not line.startswith("#") for w in line.split()]
        assert configmap["data"][name].split() == words, name
    probe = container["readinessProbe"]["httpGet"]["path"]
    assert probe.split("/")[3] in [m.name for m in a.model_config_list.config]


def _promtool() -> str:
    import shutil

    path = shutil.which("promtool")
    assert path, "promtool is not installed: `make test` installs it (apt-get install prometheus)"
    return path


def test_gateway_alert_rules_pass_promtool_check_and_unit_tests():
    import subprocess

    rules = os.path.join(DEPLOY, "prometheus")
    check = subprocess.run([_promtool(), "check", "rules", "gateway.rules.yml"], cwd=rules,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    unit = subprocess.run([_promtool(), "test", "rules", "gateway.rules.test.yml"], cwd=rules,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_alert_rules_name_metrics_the_gateway_exports():
    """A renamed metric would leave a rule that never fires: every series a rule reads is in
    the gateway's exposition."""
    import re

    import yaml

    from tandem.serving.gateway.monitor import GatewayMetrics

    metrics = GatewayMetrics()
    metrics.violation_rate.labels("age").set(0)
    metrics.threshold.labels("age").set(0)
    metrics.mirror_requests.labels("OK").inc()
    metrics.mirror_dropped.labels("queue_full").inc()
    exported = {line.split("{")[0].split(" ")[0]
                for line in metrics.exposition().decode().splitlines()
                if line and not line.startswith("#")}
    with open(os.path.join(DEPLOY, "prometheus", "gateway.rules.yml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    used = {m for r in rules for m in re.findall(r"\b(tandem_gateway_[a-z_]+)", r["expr"])}
    assert used and used <= exported, used - exported


def test_gateway_manifest_runs_the_cli_with_a_config_it_accepts(tmp_path):
    import yaml

    from tandem.pipeline.cli import build_parser
    from tandem.serving.gateway.config import load_config

    with open(os.path.join(DEPLOY, "k8s", "gateway.yaml")) as f:
        configmap, deployment, service = yaml.safe_load_all(f)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tandem", "serve", "gateway"]
    args = build_parser().parse_args(["serve", "gateway", *container["args"]])
    assert (args.port, args.rest_api_port, args.host) == (8500, 8501, "0.0.0.0")
    assert args.gateway_config == "/config/gateway.yaml"  # the ConfigMap mounted below
    path = tmp_path / "gateway.yaml"
    path.write_text(configmap["data"]["gateway.yaml"])
    config = load_config(str(path))
    assert config.primary.address == "tandem-serving:8500" and config.decorate.redis
    local = load_config(os.path.join(DEPLOY, "gateway", "listening.yaml"))
    assert config.join_list() == local.join_list()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {
        p["name"] for p in container["ports"]}


def test_shipped_gateway_config_joins_what_the_generator_joins():
    from tandem.pipeline.datasets import listening
    from tandem.serving.gateway.config import load_config

    config = load_config(os.path.join(DEPLOY, "gateway", "listening.yaml"))
    assert config.join_list() == listening.joins()


def test_taxi_gateway_config_joins_nothing_and_validates_its_schema():
    from tandem.schemas import load_schema
    from tandem.serving.gateway.config import load_config
    from tandem.serving.gateway.validator import Validator

    config = load_config(os.path.join(DEPLOY, "gateway", "taxi.yaml"))
    assert config.join_list() == [] and config.log.id_feature == ""
    validator = Validator(load_schema(os.path.join(DEPLOY, "..", config.schema)))
    assert len(validator.checks) > 10
