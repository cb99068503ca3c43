"""Model server: the command line of TF Serving 2.16's `tensorflow_model_server` (main.cc), plus
--enable_serialization_as_tensor_content from 2.19.

Every flag stock TF Serving accepts is accepted here, so an existing command line starts the
embedded server unchanged. Those that change what a client or an operator sees are
implemented; the rest tune things the embedded server does not have (TPUs, TFLite, SSL, GPU
memory, TensorFlow session config) and are accepted with a one-line notice when set. Two flags
are tandem's own: --host (TF Serving binds every interface; tandem binds 127.0.0.1 unless told)
and --fall_back_on_load_failure (see tandem.serving.model_server.manager.aspired_versions), plus
--max_request_bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from tandem.serving.model_server.model_config import ConfigFileError


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    type: type
    default: Any
    help: str
    implemented: bool = True


FLAGS = (
    Flag("port", int, 8500, "gRPC port"),
    Flag("grpc_socket_path", str, "", "also serve gRPC on this UNIX socket"),
    Flag("rest_api_port", int, 8501, "REST and metrics port (0 disables)"),
    Flag("rest_api_num_threads", int, 0, "threads doing REST requests' work (0: 4 per core)"),
    Flag("rest_api_timeout_in_ms", int, 30000, "REST requests taking longer get 504"),
    Flag("rest_api_enable_cors_support", bool, False, "add CORS headers to REST responses"),
    Flag("enable_batching", bool, False, "merge concurrent requests into batches"),
    Flag("allow_version_labels_for_unavailable_models", bool, False,
         "allow a config to label versions that are not loaded yet (e.g. at start-up)"),
    Flag("batching_parameters_file", str, "", "BatchingParameters text proto"),
    Flag("enable_per_model_batching_parameters", bool, False,
         "read batching parameters from each model's directory", implemented=False),
    Flag("model_config_file", str, "", "ModelServerConfig text proto (models.config)"),
    Flag("model_config_file_poll_wait_seconds", float, 0,
         "re-read the config file this often (0: never)"),
    Flag("model_name", str, "", "serve one model under this name"),
    Flag("model_base_path", str, "", "the one model's base path (version subdirectories)"),
    Flag("num_load_threads", int, 0, "load models in parallel on this many threads (0: serial)"),
    Flag("num_unload_threads", int, 0, "unload threads", implemented=False),
    Flag("max_num_load_retries", int, 5, "retries of a failed load", implemented=False),
    Flag("load_retry_interval_micros", int, 60_000_000, "between load retries",
         implemented=False),
    Flag("file_system_poll_wait_seconds", float, 1, "look for new versions this often"),
    Flag("flush_filesystem_caches", bool, True, "flush file system caches after loading",
         implemented=False),
    Flag("tensorflow_session_parallelism", int, 0, "TF session threads", implemented=False),
    Flag("tensorflow_session_config_file", str, "", "TF ConfigProto", implemented=False),
    Flag("tensorflow_intra_op_parallelism", int, 0, "threads inside one op (0: TF chooses)"),
    Flag("tensorflow_inter_op_parallelism", int, 0, "ops run in parallel (0: TF chooses)"),
    Flag("use_alts_credentials", bool, False, "ALTS credentials", implemented=False),
    Flag("ssl_config_file", str, "", "SSL config", implemented=False),
    Flag("platform_config_file", str, "", "PlatformConfigMap", implemented=False),
    Flag("per_process_gpu_memory_fraction", float, 0, "GPU memory", implemented=False),
    Flag("saved_model_tags", str, "serve", "comma-separated MetaGraph tags to load"),
    Flag("grpc_channel_arguments", str, "",
         "comma-separated gRPC server channel arguments, key=value"),
    Flag("grpc_max_threads", int, 16, "threads answering gRPC requests"),
    Flag("enable_model_warmup", bool, True,
         "replay assets.extra/tf_serving_warmup_requests before serving"),
    Flag("num_request_iterations_for_warmup", int, 1, "times each warmup request is replayed"),
    Flag("version", bool, False, "print the version and exit"),
    Flag("monitoring_config_file", str, "", "MonitoringConfig text proto (prometheus_config)"),
    Flag("remove_unused_fields_from_bundle_metagraph", bool, True, "metagraph trimming",
         implemented=False),
    Flag("prefer_tflite_model", bool, False, "TFLite", implemented=False),
    Flag("num_tflite_pools", int, 1, "TFLite", implemented=False),
    Flag("num_tflite_interpreters_per_pool", int, 1, "TFLite", implemented=False),
    Flag("enable_signature_method_name_check", bool, False,
         "refuse Classify/Regress on signatures whose method_name is not classify/regress"),
    Flag("xla_cpu_compilation_enabled", bool, False, "XLA on CPU", implemented=False),
    Flag("enable_profiler", bool, True, "TensorFlow profiler", implemented=False),
    Flag("thread_pool_factory_config_file", str, "", "thread pools", implemented=False),
    Flag("mixed_precision", str, "", "mixed precision", implemented=False),
    Flag("skip_initialize_tpu", bool, False, "TPU", implemented=False),
    Flag("enable_grpc_healthcheck_service", bool, False, "gRPC health service",
         implemented=False),
    # Since TF Serving 2.19: clients that decode tensor_content faster than repeated fields.
    Flag("enable_serialization_as_tensor_content", bool, False,
         "answer Predict with output tensors serialized as tensor_content"),
)

# tandem's own flags (not in TF Serving's main.cc).
TANDEM_FLAGS = (
    Flag("host", str, "127.0.0.1", "bind address (TF Serving binds all interfaces)"),
    Flag("max_request_bytes", int, 64 * 1024 * 1024,
         "larger requests get RESOURCE_EXHAUSTED"),
    Flag("fall_back_on_load_failure", bool, True,
         "under latest{N}, serve the newest versions that load when a newer one fails "
         "(false: TF Serving's rule)"),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """TF Serving's flags (and tandem's own) on `parser`, with TF Serving's defaults."""
    for flag in FLAGS + TANDEM_FLAGS:
        text = flag.help + ("" if flag.implemented else "; accepted, not used here")
        if flag.type is bool:
            parser.add_argument(f"--{flag.name}", type=parse_bool, nargs="?", const=True,
                                default=flag.default, metavar="BOOL",
                                help=f"{text} (default {str(flag.default).lower()})")
        else:
            parser.add_argument(f"--{flag.name}", type=flag.type, default=flag.default,
                                help=f"{text} (default {flag.default!r})")


def ignored(args: argparse.Namespace) -> list[str]:
    """The flags set to something other than their default that the embedded server does
    not use, as one notice each."""
    return [
        f"--{flag.name}={getattr(args, flag.name)} is accepted for compatibility with TF "
        "Serving and ignored by the embedded server"
        for flag in FLAGS
        if not flag.implemented and getattr(args, flag.name) != flag.default
    ]


def channel_arguments(text: str) -> list[tuple[str, Any]]:
    """--grpc_channel_arguments as TF Serving parses it: comma-separated key=value, a value
    that parses as an integer passed as one."""
    pairs: list[tuple[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigFileError(
                f"--grpc_channel_arguments: {item!r} is not key=value (e.g. "
                "grpc.max_connection_age_ms=30000)")
        try:
            pairs.append((key, int(value)))
        except ValueError:
            pairs.append((key, value))
    return pairs
