"""Model server: the REST API as TF Serving documents it, plus the Prometheus endpoint.

`RestApi` is the API (routes, TF Serving's rules); `tandem.serving.http_front.RestServer` frames it
over HTTP on aiohttp; the JSON conversions are `tandem.serving.rest_codec`'s, shared with the gateway."""

from __future__ import annotations

import logging
from typing import Any

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    regression_pb2,
)

from tandem.serving.errors import NotFound, ServingError
from tandem.serving.model_server.grpc_api import model_metadata, run_request
from tandem.serving.model_server.manager import ModelManager, State
from tandem.serving.model_server.metrics import ServerMetrics
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

log = logging.getLogger("tandem.serving")


def status_json(records) -> dict:
    return {"model_version_status": [
        {
            "version": str(r.version),
            "state": State.Name(r.state),
            "status": {"error_code": "UNKNOWN" if r.error else "OK", "error_message": r.error},
        }
        for r in records
    ]}


class RestApi:
    """TF Serving's REST API as one synchronous call, `dispatch(method, path, body)`, apart
    from the HTTP server that frames requests (so the same routes serve any front)."""

    def __init__(self, manager: ModelManager, metrics: ServerMetrics,
                 monitoring_path: str | None):
        self.manager, self.metrics, self.monitoring_path = manager, metrics, monitoring_path

    def dispatch(self, method: str, path: str, raw: bytes) -> tuple[int, Any, str]:
        """(HTTP status, body (a JSON-able value or bytes), content type); never raises."""
        try:
            return self.route(method, path, raw)
        except ServingError as e:
            log.info("REST %s %s: %s %s", method, path, e.code.name, e)  # one line per refusal
            return e.http_status, {"error": str(e)}, "application/json"
        except Exception as e:  # noqa: BLE001 - answer, never die
            log.exception("REST %s %s failed", method, path)
            return 500, {"error": f"{type(e).__name__}: {e}"}, "application/json"

    def route(self, method: str, path: str, raw: bytes):
        path = path.split("?", 1)[0]
        if method == "GET" and self.monitoring_path and path == self.monitoring_path:
            return 200, self.metrics.exposition(), "text/plain; version=0.0.4"
        if not API_PREFIX.match(path):
            raise NotFound(f"Not found: {method} {path}")
        spec, verb, metadata = parse_path(method, path)
        if method == "GET":
            if metadata:
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                response = run_request(self.manager, self.metrics, "metadata", request,
                                       model_metadata)
                return 200, metadata_json(response), "application/json"
            return 200, status_json(self.manager.status(spec)), "application/json"
        body = parse_body(raw)
        if verb == "predict":
            def predict(servable, _) -> tuple[predict_pb2.PredictResponse, bool]:
                """The response, and whether the request used the row format."""
                request, rows = predict_request(
                    body, spec, lambda name: {k: v.dtype for k, v in servable.signature(name)[1].inputs.items()})
                request.model_spec.version.value = servable.version
                return servable.predict(request), rows

            response, rows = run_request(self.manager, self.metrics, "predict",
                                         predict_pb2.PredictRequest(model_spec=spec), predict)
            return 200, predict_json(response, rows), "application/json"
        sig = signature_name(body)

        def with_examples(call):
            def handler(servable, request):
                request.input.CopyFrom(example_input(body, servable.example_features(sig)))
                return call(servable, request)
            return handler

        if verb == "classify":
            request = classification_pb2.ClassificationRequest(model_spec=spec)
            request.model_spec.signature_name = sig
            response = run_request(self.manager, self.metrics, "classify", request,
                                   with_examples(lambda s, r: s.classify(r)))
            return 200, classify_json(response), "application/json"
        request = regression_pb2.RegressionRequest(model_spec=spec)
        request.model_spec.signature_name = sig
        response = run_request(self.manager, self.metrics, "regress", request,
                               with_examples(lambda s, r: s.regress(r)))
        return 200, regress_json(response), "application/json"
