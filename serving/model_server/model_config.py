"""Model server config: TF Serving's ModelServerConfig text proto, read and written the way
TF Serving reads it, so the same file works with stock tensorflow/serving."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import atomic_write
from tandem.serving.errors import InvalidArgument

DEFAULT_MONITORING_PATH = "/monitoring/prometheus/metrics"


class ConfigFileError(BadInputError):
    """A config file that cannot be read or parsed; the message names the file."""


def read_text(path: str, what: str, error: type[ConfigFileError] = ConfigFileError) -> str:
    """A config file's text; `error` names the file (`what`) when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None


def parse_config(text: str, source: str = "<config>") -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigFileError(f"{source} is not a ModelServerConfig text proto: {e}") from None
    check_config(config)
    return config


def config_from_file_text(text: str, path: str) -> model_server_config_pb2.ModelServerConfig:
    """parse_config for a file's text: every problem is a ConfigFileError naming the file."""
    try:
        return parse_config(text, path)
    except InvalidArgument as e:
        raise ConfigFileError(f"{path}: {e}") from None


def read_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    return config_from_file_text(read_text(path, "model config file"), path)


def write_config(config: model_server_config_pb2.ModelServerConfig, path: str) -> None:
    """Atomic rewrite: a server polling the file never sees half a config."""
    atomic_write(path, text_format.MessageToString(config))


def check_config(config: model_server_config_pb2.ModelServerConfig) -> None:
    if config.WhichOneof("config") != "model_config_list":
        raise InvalidArgument("only model_config_list configs are supported")
    names = [m.name for m in config.model_config_list.config]
    for model in config.model_config_list.config:
        if not model.name:
            raise InvalidArgument("a model config has no name")
        if not model.base_path:
            raise InvalidArgument(f"model '{model.name}' has no base_path")
        if model.model_platform and model.model_platform != "tensorflow":
            raise InvalidArgument(
                f"model '{model.name}': unsupported model_platform '{model.model_platform}'"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidArgument(f"model name(s) configured twice: {', '.join(duplicates)}")


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """What --model_name/--model_base_path mean: one model, latest version served."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, base_path, "tensorflow"
    return config


def find_model(config, name: str):
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    return None


def _monitoring_config_class():
    """TF Serving's MonitoringConfig (monitoring_config.proto), which tensorflow-serving-api
    does not ship: built here from its two messages, so the file is read as the text proto
    it is (`prometheus_config: { enable: true, path: "..." }` and every other spelling)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="tandem/serving/monitoring_config.proto", package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


MonitoringConfig = _monitoring_config_class()


def monitoring_path(path: str | None) -> str | None:
    """The Prometheus path from a TF Serving monitoring config file; None when disabled.
    Without a file tandem still serves metrics on the default path (stock TF Serving serves
    none): an embedded server is most often run where nobody wrote that file."""
    if not path:  # None, or the empty default of the command line's flag
        return DEFAULT_MONITORING_PATH
    text = read_text(path, "monitoring config file")
    config = MonitoringConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigFileError(f"monitoring config file {path} does not parse: {e}") from None
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_MONITORING_PATH
