"""Model server: the embedded TF Serving–compatible server (gRPC + REST + metrics) and the
pollers that keep it in step with the model directories and the config file."""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent import futures

import grpc

from tandem.serving.errors import FailedPrecondition
from tandem.serving.http_front import RestServer
from tandem.serving.model_server.batching import (
    BatchingOptions,
    BatchScheduler,
    read_batching_parameters,
)
from tandem.serving.model_server.flags import channel_arguments
from tandem.serving.model_server.grpc_api import ModelService, PredictionService, add_services
from tandem.serving.model_server.manager import ModelManager
from tandem.serving.model_server.metrics import ServerMetrics
from tandem.serving.model_server.model_config import (
    ConfigFileError,
    config_from_file_text,
    monitoring_path,
    read_text,
    single_model_config,
)
from tandem.serving.model_server.rest_api import RestApi

log = logging.getLogger("tandem.serving")


@dataclasses.dataclass
class ServerOptions:
    """Flags as TF Serving names them, plus the bind address (127.0.0.1 by default)."""

    port: int = 8500
    rest_api_port: int = 8501  # 0 disables REST (and the metrics endpoint), as in TF Serving
    host: str = "127.0.0.1"
    model_name: str | None = None
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0  # 0: read the file once
    file_system_poll_wait_seconds: float = 1
    enable_model_warmup: bool = True
    # tandem's own: under latest{N}, a version that fails to load is passed over for the next
    # older one that loads (TF Serving would serve nothing after a restart). False: TF Serving.
    fall_back_on_load_failure: bool = True
    monitoring_config_file: str | None = None
    enable_batching: bool = False
    batching_parameters_file: str | None = None  # without it: TF Serving's defaults
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_max_threads: int = 16
    # TensorFlow's thread pools, as TF Serving's flags of the same names; 0 lets TF choose.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    enable_signature_method_name_check: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    num_load_threads: int = 0
    grpc_channel_arguments: str = ""
    grpc_socket_path: str = ""
    saved_model_tags: str = "serve"
    num_request_iterations_for_warmup: int = 1
    rest_api_enable_cors_support: bool = False
    rest_api_num_threads: int = 0  # 0: 4 per core, as TF Serving
    rest_api_timeout_in_ms: int = 30000
    enable_serialization_as_tensor_content: bool = False  # Predict outputs in tensor_content


def configure_tensorflow_threads(intra: int, inter: int) -> None:
    """Size TensorFlow's thread pools. They can only be sized before TensorFlow runs its first
    op in this process; after that a differing request is logged and the pools stay."""
    import tensorflow as tf

    threading_config = tf.config.threading
    for value, get, set_, flag in (
        (intra, threading_config.get_intra_op_parallelism_threads,
         threading_config.set_intra_op_parallelism_threads, "tensorflow_intra_op_parallelism"),
        (inter, threading_config.get_inter_op_parallelism_threads,
         threading_config.set_inter_op_parallelism_threads, "tensorflow_inter_op_parallelism"),
    ):
        if value < 0:
            raise ConfigFileError(f"--{flag} must be >= 0, got {value}")
        if not value or get() == value:
            continue
        try:
            set_(value)
        except RuntimeError:
            log.warning("--%s=%d not applied: TensorFlow already runs in this process with %d",
                        flag, value, get())


class ModelServer:
    def __init__(self, options: ServerOptions):
        if options.model_config_file and (options.model_name or options.model_base_path):
            raise ConfigFileError("use --model_config_file or --model_name/--model_base_path, not both")
        if not options.model_config_file and not (options.model_name and options.model_base_path):
            raise ConfigFileError("give --model_config_file, or both --model_name and --model_base_path")
        if options.batching_parameters_file and not options.enable_batching:
            raise ConfigFileError("--batching_parameters_file needs --enable_batching")
        self.options = options
        self.metrics = ServerMetrics()
        self.batching = (read_batching_parameters(options.batching_parameters_file)
                         if options.batching_parameters_file
                         else BatchingOptions() if options.enable_batching else None)
        self.batcher: BatchScheduler | None = None
        if options.num_request_iterations_for_warmup < 1:
            raise ConfigFileError("--num_request_iterations_for_warmup must be >= 1")
        self.channel_arguments = channel_arguments(options.grpc_channel_arguments)
        self.manager = ModelManager(
            warmup=options.enable_model_warmup, on_event=self.metrics.record_event,
            on_load=self.metrics.record_load,
            fall_back=options.fall_back_on_load_failure,
            method_name_check=options.enable_signature_method_name_check,
            allow_unavailable_labels=options.allow_version_labels_for_unavailable_models,
            load_threads=options.num_load_threads,
            tags=[t.strip() for t in options.saved_model_tags.split(",") if t.strip()],
            warmup_iterations=options.num_request_iterations_for_warmup,
        )
        self._metrics_path = monitoring_path(options.monitoring_config_file)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._config_text: str | None = None
        self.grpc_server: grpc.Server | None = None
        self.rest: RestServer | None = None
        self.grpc_port = 0

    def _initial_config(self):
        path = self.options.model_config_file
        if path:
            self._config_text = read_text(path, "model config file")
            return config_from_file_text(self._config_text, path)
        return single_model_config(self.options.model_name, self.options.model_base_path)

    def start(self) -> None:
        """Load the configured models (as TF Serving does before it listens), then serve."""
        configure_tensorflow_threads(self.options.tensorflow_intra_op_parallelism,
                                     self.options.tensorflow_inter_op_parallelism)
        if self.batching is not None:
            self.batcher = BatchScheduler(self.batching, on_batch=self.metrics.observe_batch)
            self.manager.batcher = self.batcher
        try:
            self.manager.apply_config(self._initial_config())
        except FailedPrecondition as e:
            hint = ("; start with --allow_version_labels_for_unavailable_models to label "
                    "versions before they load" if "label" in str(e) else "")
            raise ConfigFileError(f"the model config was refused: {e}{hint}") from None
        size = self.options.max_request_bytes
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.options.grpc_max_threads),
            options=[("grpc.max_receive_message_length", size),
                     ("grpc.max_send_message_length", size), *self.channel_arguments],
        )
        prediction = PredictionService(
            self.manager, self.metrics,
            tensor_content=self.options.enable_serialization_as_tensor_content)
        add_services(self.grpc_server, prediction, ModelService(self.manager))
        self.grpc_port = self.grpc_server.add_insecure_port(f"{self.options.host}:{self.options.port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC port {self.options.host}:{self.options.port}")
        if self.options.grpc_socket_path:
            if not self.grpc_server.add_insecure_port(f"unix:{self.options.grpc_socket_path}"):
                raise OSError(f"cannot listen on UNIX socket {self.options.grpc_socket_path}")
        self.grpc_server.start()
        if self.options.rest_api_port:
            self.rest = RestServer(
                RestApi(self.manager, self.metrics, self._metrics_path), self.options.host,
                self.options.rest_api_port, size, cors=self.options.rest_api_enable_cors_support,
                threads=self.options.rest_api_num_threads,
                timeout_ms=self.options.rest_api_timeout_in_ms)
            self.rest.start()
        self._every(self.options.file_system_poll_wait_seconds, self.manager.poll, "fs-poll")
        if self.options.model_config_file:
            self._every(self.options.model_config_file_poll_wait_seconds, self._reload_file,
                        "config-poll")

    def _every(self, seconds: float, fn, name: str) -> None:
        if not seconds or seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a poller must outlive one bad pass
                    log.exception("%s pass failed", name)

        thread = threading.Thread(target=loop, daemon=True, name=name)
        thread.start()
        self._threads.append(thread)

    def _reload_file(self) -> None:
        path = self.options.model_config_file
        try:
            text = read_text(path, "model config file")
        except ConfigFileError as e:
            log.error("%s", e)
            return
        if text == self._config_text:
            return
        self._config_text = text
        try:
            self.manager.apply_config(config_from_file_text(text, path))
            log.info("applied model config file %s", path)
        except Exception as e:  # noqa: BLE001 - keep serving the last good config
            log.error("model config file %s not applied: %s", path, e)

    @property
    def rest_port(self) -> int:
        return self.rest.port if self.rest else 0

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        if self.rest:
            self.rest.stop()
        if self.grpc_server:
            self.grpc_server.stop(grace).wait()
        if self.batcher:
            self.batcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait(self) -> None:
        self._stop.wait()
