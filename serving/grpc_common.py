"""What the model server's and the gateway's gRPC services share: requests parsed inside the
handler, and TF Serving's service names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def parsing(method, request_class):
    """`method` with the request parsed inside the call: bytes that are not a valid request
    get INVALID_ARGUMENT. (gRPC's own deserializer answers INTERNAL, which a malformed request
    must never produce.)"""

    def handler(raw: bytes, context):
        try:
            request = request_class.FromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and others
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request is not a valid {request_class.DESCRIPTOR.full_name}: {e}")
        return method(request, context)

    return handler


def _serialize(response) -> bytes:
    """A response message, or bytes already serialized (passed through as they are)."""
    return response if isinstance(response, bytes) else response.SerializeToString()


def prediction_service_methods(service) -> dict[str, tuple[Callable, Any, Any]]:
    """TF Serving's PredictionService methods, bound to `service`'s handlers of the same
    names, with their request and response classes (for `register`)."""
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        inference_pb2,
        predict_pb2,
        regression_pb2,
    )

    return {
        "Classify": (service.Classify, classification_pb2.ClassificationRequest,
                     classification_pb2.ClassificationResponse),
        "Regress": (service.Regress, regression_pb2.RegressionRequest,
                    regression_pb2.RegressionResponse),
        "Predict": (service.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "MultiInference": (service.MultiInference, inference_pb2.MultiInferenceRequest,
                           inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": (service.GetModelMetadata,
                             get_model_metadata_pb2.GetModelMetadataRequest,
                             get_model_metadata_pb2.GetModelMetadataResponse),
    }


def register(server: grpc.Server,
             services: dict[str, dict[str, tuple[Callable, Any, Any]]]) -> None:
    """Register {service: {method: (call, request class, response class)}} on `server`, each
    call receiving its request parsed by `parsing`."""
    for name, methods in services.items():
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                parsing(call, request), request_deserializer=None,
                response_serializer=_serialize)
            for method, (call, request, response) in methods.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
