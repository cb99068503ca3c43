"""Model server: the gRPC PredictionService and ModelService, on the servicers generated in
tensorflow-serving-api, with TF Serving's status codes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    status_pb2,
)

from tandem.serving.errors import InvalidArgument, ServingError
from tandem.serving.grpc_common import prediction_service_methods, register
from tandem.serving.model_server.manager import ModelManager
from tandem.serving.model_server.metrics import ServerMetrics
from tandem.serving.model_server.model_config import check_config

log = logging.getLogger("tandem.serving")
ERROR_CODES = {  # grpc.StatusCode -> tensorflow.error.Code number
    grpc.StatusCode.INVALID_ARGUMENT: 3, grpc.StatusCode.NOT_FOUND: 5,
    grpc.StatusCode.FAILED_PRECONDITION: 9, grpc.StatusCode.RESOURCE_EXHAUSTED: 8,
    grpc.StatusCode.INTERNAL: 13, grpc.StatusCode.UNAVAILABLE: 14,
    grpc.StatusCode.UNIMPLEMENTED: 12,
}


def run_request(
    manager: ModelManager, metrics: ServerMetrics, api: str, request: Any,
    handler: Callable[[Any, Any], Any], model_spec: Any = None,
) -> Any:
    """Resolve the servable `model_spec` (default: the request's) names, run
    `handler(servable, request)`, time it and count it.
    Raises ServingError; anything unexpected becomes INTERNAL, never a dead server."""
    start = time.perf_counter()
    spec = request.model_spec if model_spec is None else model_spec
    model, version = spec.name or "", ""
    try:
        servable = manager.resolve(spec)
        version = str(servable.version)
        response = handler(servable, request)
    except ServingError as e:
        metrics.observe(model, version, api, e.code.name, time.perf_counter() - start)
        raise
    except Exception as e:  # noqa: BLE001 - the server must answer, not die
        log.exception("%s on model %s failed", api, model)
        metrics.observe(model, version, api, "INTERNAL", time.perf_counter() - start)
        err = ServingError(f"{api} failed: {type(e).__name__}: {e}")
        raise err from None
    metrics.observe(model, version, api, "OK", time.perf_counter() - start)
    return response


def model_metadata(servable, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
    fields = list(request.metadata_field)
    if fields != ["signature_def"]:
        raise InvalidArgument(
            f"Metadata field(s) {', '.join(fields) or '(none)'} not supported; "
            "request metadata_field: signature_def"
        )
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    servable.fill_spec(response.model_spec)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in servable.signature_defs.items():
        sig_map.signature_def[name].CopyFrom(sig)
    response.metadata["signature_def"].Pack(sig_map)
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: ServerMetrics,
                 tensor_content: bool = False):
        """`tensor_content`: --enable_serialization_as_tensor_content. It changes only how
        Predict's output tensors travel; the REST API writes the same JSON either way."""
        self.manager, self.metrics = manager, metrics
        self.tensor_content = tensor_content

    def _serve(self, api, request, context, handler, model_spec=None):
        try:
            return run_request(self.manager, self.metrics, api, request, handler, model_spec)
        except ServingError as e:
            context.abort(e.code, str(e))

    def Predict(self, request, context):
        return self._serve("predict", request, context,
                           lambda s, r: s.predict(r, as_tensor_content=self.tensor_content))

    def Classify(self, request, context):
        return self._serve("classify", request, context, lambda s, r: s.classify(r))

    def Regress(self, request, context):
        return self._serve("regress", request, context, lambda s, r: s.regress(r))

    def MultiInference(self, request, context):
        """All tasks run on one version: the one the first task's ModelSpec resolves to; the
        others must name the same model and version (or label)."""
        if not request.tasks:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Expected at least one task")
        first = request.tasks[0].model_spec
        for task in request.tasks[1:]:
            spec = task.model_spec
            if (spec.name, spec.WhichOneof("version_choice"), spec.version.value,
                    spec.version_label) != (first.name, first.WhichOneof("version_choice"),
                                            first.version.value, first.version_label):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "All ModelSpecs in a MultiInferenceRequest must access the same "
                              "model name and version.")
        return self._serve("multi_inference", request, context,
                           lambda s, r: s.multi_inference(r), model_spec=first)

    def GetModelMetadata(self, request, context):
        return self._serve("metadata", request, context, model_metadata)


def version_status(record) -> get_model_status_pb2.ModelVersionStatus:
    status = status_pb2.StatusProto()
    if record.error:
        status.error_code = 2  # UNKNOWN, as TF Serving reports a failed load
        status.error_message = record.error
    return get_model_status_pb2.ModelVersionStatus(
        version=record.version, state=record.state, status=status
    )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, on_config: Callable[[Any], None] | None = None):
        self.manager = manager
        self.on_config = on_config or (lambda config: None)

    def GetModelStatus(self, request, context):
        try:
            records = self.manager.status(request.model_spec)
        except ServingError as e:
            context.abort(e.code, str(e))
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[version_status(r) for r in records]
        )

    def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            check_config(request.config)
            self.manager.apply_config(request.config)
            self.on_config(request.config)
        except ServingError as e:
            response.status.error_code = ERROR_CODES.get(e.code, 2)
            response.status.error_message = str(e)
            context.abort(e.code, str(e))
        return response


def add_services(server: grpc.Server, prediction: PredictionService,
                 model: ModelService) -> None:
    """Register both services on `server` under TF Serving's names, parsing requests in the
    handlers (see `tandem.serving.grpc_common.parsing`)."""
    services = {
        "tensorflow.serving.PredictionService": prediction_service_methods(prediction),
        "tensorflow.serving.ModelService": {
            "GetModelStatus": (model.GetModelStatus, get_model_status_pb2.GetModelStatusRequest,
                               get_model_status_pb2.GetModelStatusResponse),
            "HandleReloadConfigRequest": (model.HandleReloadConfigRequest,
                                          model_management_pb2.ReloadConfigRequest,
                                          model_management_pb2.ReloadConfigResponse),
        },
    }
    register(server, services)
