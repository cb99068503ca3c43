"""Gateway: its gRPC and REST fronts, TF Serving's own APIs, so any TF Serving client can point
at the gateway instead of the model server.

gRPC: `tensorflow.serving.PredictionService` (Predict, Classify, Regress through the stages;
GetModelMetadata passed through; MultiInference unimplemented) and
`tensorflow.serving.ModelService` GetModelStatus (passed through). The request id comes back
as `x-request-id` in the trailing metadata (a client may send its own as request metadata).

REST: TF Serving's routes (`/v1/models/...:predict|classify|regress`, status, metadata) with
the same JSON rules, `x-request-id` as a response header, and the Prometheus metrics at
/monitoring/prometheus/metrics.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import json_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    regression_pb2,
)

from tandem.serving.errors import NotFound, ServingError
from tandem.serving.gateway.config import GatewayConfig
from tandem.serving.gateway.gateway import Gateway
from tandem.serving.grpc_common import prediction_service_methods, register
from tandem.serving.http_front import RestServer
from tandem.serving.rest_codec import (
    API_PREFIX,
    classify_json,
    example_input,
    metadata_json,
    parse_body,
    parse_path,
    predict_json,
    predict_request,
    regress_json,
    signature_name,
)

log = logging.getLogger("tandem.gateway")
METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_ID = "x-request-id"


def _client_id(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID and value:
            return value
    return None


class GatewayService:
    """The gRPC methods, each a thin wrapper over `Gateway`."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def _run(self, api: str, request, context):
        try:
            response, request_id = self.gateway.handle_bytes(api, request, _client_id(context))
        except ServingError as e:
            context.abort(e.code, str(e))
        context.set_trailing_metadata(((REQUEST_ID, request_id),))
        return response

    def Predict(self, request, context):
        return self._run("predict", request, context)

    def Classify(self, request, context):
        return self._run("classify", request, context)

    def Regress(self, request, context):
        return self._run("regress", request, context)

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "the gateway serves Predict, Classify and Regress; MultiInference goes "
                      "to the model server directly")

    def GetModelMetadata(self, request, context):
        try:
            return self.gateway.metadata(request)
        except ServingError as e:
            context.abort(e.code, str(e))

    def GetModelStatus(self, request, context):
        try:
            return self.gateway.status(request)
        except ServingError as e:
            context.abort(e.code, str(e))


_TF_TYPES = {schema_pb2.INT: "int64", schema_pb2.FLOAT: "float32", schema_pb2.BYTES: "string"}


class GatewayRestApi:
    """TF Serving's REST routes over `Gateway`; `dispatch` never raises."""

    def __init__(self, gateway: Gateway):
        import tensorflow as tf

        self.gateway = gateway
        self.example_types = {name: tf.as_dtype(_TF_TYPES[t]) for name, t in
                              gateway.types.items() if t in _TF_TYPES}
        self._signatures: dict[tuple, dict[str, int]] = {}
        self._lock = threading.Lock()

    def dispatch(self, method: str, path: str, raw: bytes) -> tuple[Any, ...]:
        path = path.split("?", 1)[0]
        try:
            status, body, request_id = self.route(method, path, raw)
        except ServingError as e:
            return e.http_status, {"error": str(e)}, "application/json"
        except Exception as e:  # noqa: BLE001 - answer, never die
            log.exception("REST %s %s failed", method, path)
            return 500, {"error": f"{type(e).__name__}: {e}"}, "application/json"
        if method == "GET" and path == METRICS_PATH:
            return status, body, "text/plain; version=0.0.4"
        headers = {REQUEST_ID: request_id} if request_id else {}
        return status, body, "application/json", headers

    def _signature_inputs(self, spec, name: str) -> dict[str, int]:
        """A signature's input dtypes, from the primary's metadata (cached per model spec)."""
        key = (spec.name, spec.version.value, spec.version_label, name)
        with self._lock:
            cached = self._signatures.get(key)
        if cached is not None:
            return cached
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.CopyFrom(spec)
        response = self.gateway.metadata(request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        if name not in sig_map.signature_def:
            raise NotFound(f"Serving signature name: \"{name}\" not found in signature def")
        inputs = {k: v.dtype for k, v in sig_map.signature_def[name].inputs.items()}
        with self._lock:
            self._signatures[key] = inputs
        return inputs

    def route(self, method: str, path: str, raw: bytes) -> tuple[int, Any, str | None]:
        if method == "GET" and path == METRICS_PATH:
            return 200, self.gateway.metrics.exposition(), None
        if not API_PREFIX.match(path):
            raise NotFound(f"Not found: {method} {path}")
        spec, verb, metadata = parse_path(method, path)
        if method == "GET":
            if metadata:
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"])
                return 200, metadata_json(self.gateway.metadata(request)), None
            response = self.gateway.status(get_model_status_pb2.GetModelStatusRequest(
                model_spec=spec))
            return 200, json_format.MessageToDict(
                response, preserving_proto_field_name=True,
                including_default_value_fields=True), None
        body = parse_body(raw)
        if verb == "predict":
            request, rows = predict_request(
                body, spec, lambda name: self._signature_inputs(spec, name))
            response, request_id = self.gateway.handle("predict", request)
            return 200, predict_json(response, rows), request_id
        model_input = example_input(body, self.example_types)
        if verb == "classify":
            request = classification_pb2.ClassificationRequest(model_spec=spec, input=model_input)
            request.model_spec.signature_name = signature_name(body)
            response, request_id = self.gateway.handle("classify", request)
            return 200, classify_json(response), request_id
        request = regression_pb2.RegressionRequest(model_spec=spec, input=model_input)
        request.model_spec.signature_name = signature_name(body)
        response, request_id = self.gateway.handle("regress", request)
        return 200, regress_json(response), request_id


class GatewayServer:
    """The gateway's gRPC server and (optionally) its REST server, on one Gateway."""

    def __init__(self, config: GatewayConfig, host: str = "127.0.0.1", port: int = 8600,
                 rest_api_port: int = 0, threads: int = 16,
                 max_request_bytes: int = 64 << 20, reuse_port: bool = False):
        """`reuse_port`: bind with SO_REUSEPORT, as each of N workers sharing the ports does
        (serving/gateway/workers.py); otherwise a port in use is an error."""
        self.gateway = Gateway(config)
        service = GatewayService(self.gateway)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gateway"),
            options=[("grpc.max_receive_message_length", max_request_bytes),
                     ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", int(reuse_port))])
        register(self.server, {  # Predict/Classify/Regress answer with A's own bytes
            "tensorflow.serving.PredictionService": prediction_service_methods(service),
            "tensorflow.serving.ModelService": {
                "GetModelStatus": (service.GetModelStatus,
                                   get_model_status_pb2.GetModelStatusRequest,
                                   get_model_status_pb2.GetModelStatusResponse),
            },
        })
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            self.gateway.close()
            raise OSError(f"cannot bind the gateway's gRPC port {host}:{port}")
        self.rest = None
        if rest_api_port:
            try:
                self.rest = RestServer(GatewayRestApi(self.gateway), host, rest_api_port,
                                       max_body_bytes=max_request_bytes,
                                       reuse_port=reuse_port)
            except OSError:
                self.gateway.close()
                raise
        self.rest_port = self.rest.port if self.rest else 0
        self._stop = threading.Event()

    def start(self) -> None:
        self.server.start()
        if self.rest is not None:
            self.rest.start()

    def wait(self) -> None:
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        if self.rest is not None:
            self.rest.stop()
        self.server.stop(grace=2).wait()
        self.gateway.close()

