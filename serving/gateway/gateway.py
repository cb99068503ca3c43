"""Gateway: one request through its named, timed stages.

    decorate -> validate -> predict (model A) -> log -> mirror (model B)

The log record carries A's answer, so it is written once A has answered and before the
caller gets the answer (a record per answered request survives a crash of the gateway). The
mirror is handed the request last and works off the request path.

One module past 400 lines because the stages share one request's state and timings; what each
stage calls (sources, the validator, the log writer, the mirror) lives in its own module.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
import warnings
from typing import Any

import grpc
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tandem.schemas import load_schema
from tandem.schemas.contracts import EXAMPLES_INPUT
from tandem.schemas.request_log import PRIMARY, LogWriter, make_record, sampled
from tandem.serving.errors import InvalidArgument, ServingError, Status
from tandem.serving.gateway.config import GatewayConfig
from tandem.serving.gateway.decorate import Decorator, parse_examples
from tandem.serving.gateway.mirror import Mirror
from tandem.serving.gateway.monitor import GatewayMetrics, ViolationWindow
from tandem.serving.gateway.sources import (
    FeatureSource,
    SourceError,
    check_joins,
    check_snapshot,
    open_source,
    open_spec,
)
from tandem.serving.gateway.validator import Validator
from tandem.serving.gateway.wire import RequestReader

log = logging.getLogger("tandem.gateway")
# Bytes that are not a tf.Example are answered INVALID_ARGUMENT; protobuf's warning about
# them would only repeat that on stderr, once per bad request.
warnings.filterwarnings("ignore", message="Unexpected end-group tag", category=RuntimeWarning)
RPC_METHODS = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}
RESPONSES = {"predict": predict_pb2.PredictResponse,
             "classify": classification_pb2.ClassificationResponse,
             "regress": regression_pb2.RegressionResponse}
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)]


def schema_defaults(schema: schema_pb2.Schema, columns: list[str]) -> dict[str, Any]:
    """A value for each decorated column when an entity is unknown: the middle of an int or
    float domain, a bool's 0, the first value of a string domain."""
    by_name = {f.name: f for f in schema.feature}
    domains = {d.name: list(d.value) for d in schema.string_domain}
    out: dict[str, Any] = {}
    for column in columns:
        f = by_name.get(column)
        if f is None:
            continue
        which = f.WhichOneof("domain_info")
        if which == "int_domain" and f.int_domain.HasField("min") and f.int_domain.HasField("max"):
            out[column] = (f.int_domain.min + f.int_domain.max) // 2
        elif which == "float_domain" and f.float_domain.HasField("min") and \
                f.float_domain.HasField("max"):
            out[column] = (f.float_domain.min + f.float_domain.max) / 2
        elif which == "domain" and domains.get(f.domain):
            out[column] = domains[f.domain][0]
        elif which == "string_domain" and f.string_domain.value:
            out[column] = f.string_domain.value[0]
        elif f.type == schema_pb2.INT:
            out[column] = 0
        elif f.type == schema_pb2.FLOAT:
            out[column] = 0.0
        else:
            out[column] = ""
    return out


@dataclasses.dataclass
class RequestExamples:
    """A request's examples: parsed (Classify, Regress, and Predict bytes the wire reader
    does not walk) or read at the wire (`rows`, serving/gateway/wire.py); for Predict, their
    bytes and the input that carries them."""

    examples: list | None
    serialized: list[bytes] | None = None
    input_name: str | None = None
    rows: list[dict] | None = None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The feature source requests are decorated from, with its decorator (and its entity
    cache) and the versions the log records. A request takes the gateway's snapshot once,
    so a switch (`switch_source`) decorates and logs each request wholly from one."""

    source: FeatureSource | None
    decorator: Decorator
    versions: dict[str, str]


class Gateway:
    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics | None = None):
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.schema = load_schema(config.schema)
        self.validator = Validator(self.schema)
        self.types = {f.name: f.type for f in self.schema.feature}
        self.joins = config.join_list()
        source = None
        if self.joins:
            source = open_source(config.decorate.sqlite, config.decorate.redis)
            check_joins(source, self.joins)
        columns = [c for j in self.joins for c in j.columns]
        self.defaults = {**schema_defaults(self.schema, columns), **config.decorate.defaults}
        self.snapshot = self._snapshot(source)
        self._switch_lock = threading.Lock()
        for join in self.joins:
            for column in join.columns:
                self.metrics.source_features.labels(join.table, column).set(1)
        self.reader = RequestReader(self.validator.feature_verdict, self.validator.single_bytes,
                                    uncached=frozenset({config.log.id_feature}))
        v = config.validate
        self.reject_features = {c.name for c in self.validator.checks
                                if v.features.get(c.name, v.policy) == "reject"}
        thresholds = {c.name: float(v.thresholds.get(c.name, max(c.allowed_rate, v.alert_floor)))
                      for c in self.validator.checks}
        self.window = ViolationWindow(thresholds, v.window_s, v.min_examples, self.metrics,
                                      v.webhook)
        self.window.start(every_s=min(1.0, v.window_s / 4))
        self.writer = None
        if config.log.dir:
            self.writer = LogWriter(config.log.dir, max_bytes=config.log.max_bytes,
                                    max_age_s=config.log.max_age_s,
                                    fsync_interval_s=config.log.fsync_interval_s)
        self._channel = grpc.insecure_channel(config.primary.address, options=CHANNEL_OPTIONS)
        self.primary = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.primary_models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        # The model calls go out as bytes: the request is serialized once, for the call and
        # for the log record, and the answer's bytes go back to the caller and into the log.
        self._raw = {api: self._channel.unary_unary(f"/tensorflow.serving.PredictionService/{m}")
                     for api, m in RPC_METHODS.items()}
        self.mirror = None
        if config.shadow.address and config.shadow.model_name:
            s = config.shadow
            self.mirror = Mirror(s.address, s.model_name, version_label=s.version_label,
                                 sample_percent=s.sample_percent,
                                 queue_size=s.queue_size, timeout_s=s.timeout_s,
                                 workers=s.workers, metrics=self.metrics, writer=self.writer,
                                 log_percent=config.log.sample_percent)

    # ---- the feature source --------------------------------------------------------------

    def _snapshot(self, source: FeatureSource | None) -> Snapshot:
        decorator = Decorator(self.joins, source, self.config.decorate.on_missing,
                              self.defaults, validator=self.validator,
                              cache_s=self.config.decorate.cache_s)
        decorator.on_source = (
            lambda table, seconds: self.metrics.source_seconds.labels(table).observe(seconds))
        return Snapshot(source, decorator,
                        {source.kind: source.version} if source is not None else {})

    @property
    def source(self) -> FeatureSource | None:
        return self.snapshot.source

    @property
    def decorator(self) -> Decorator:
        return self.snapshot.decorator

    @property
    def source_versions(self) -> dict[str, str]:
        return self.snapshot.versions

    def switch_source(self, spec: str, grace_s: float = 30.0) -> Snapshot:
        """Decorate from the snapshot `spec` (a SQLite file or redis://HOST:PORT[/DB]) from
        the next request on. A snapshot that cannot replace the current one raises
        SourceError, and the current one stays. The old source is closed `grace_s` later,
        after the requests that took it have finished."""
        if not self.joins:
            raise SourceError("the gateway decorates nothing (no decorate.joins): "
                              "no feature source to switch")
        with self._switch_lock:
            source = open_spec(spec)
            try:
                check_snapshot(source, self.joins, self.snapshot.source)
            except BaseException:
                source.close()
                raise
            old, self.snapshot = self.snapshot, self._snapshot(source)
        timer = threading.Timer(grace_s, old.source.close)
        timer.daemon = True
        timer.start()
        return self.snapshot

    # ---- the stages ---------------------------------------------------------------------

    def _examples(self, api: str, request) -> RequestExamples:
        if api != "predict":
            model_input = request.input
            which = model_input.WhichOneof("kind")
            if which is None:
                raise InvalidArgument("Invalid argument: Input is empty.")
            return RequestExamples(list(getattr(model_input, which).examples))
        inputs = request.inputs
        name = EXAMPLES_INPUT if EXAMPLES_INPUT in inputs else (
            next(iter(inputs)) if len(inputs) == 1 else None)
        if name is None:
            raise InvalidArgument(f"the gateway needs serialized tf.Examples in input "
                                  f"'{EXAMPLES_INPUT}'; the request has "
                                  f"{sorted(inputs) or 'no inputs'}")
        tensor = inputs[name]
        if tensor.dtype != 7:  # DT_STRING
            raise InvalidArgument(f"input '{name}' must be DT_STRING serialized tf.Examples")
        serialized = list(tensor.string_val)
        if not serialized:
            raise InvalidArgument(f"input '{name}' holds no examples")
        read, rows = self.reader.read, []
        for data in serialized:
            row = read(data)
            if row is None or self.decorator.carries_joined(row):
                break
            rows.append(row)
        else:
            return RequestExamples(None, serialized, name, rows)
        try:
            return RequestExamples(parse_examples(serialized, f"input '{name}'"), serialized,
                                   name)
        except InvalidArgument:
            self.metrics.bad_requests.labels("not_an_example").inc()
            raise

    def _request_id(self, batch: RequestExamples, client_id: str | None
                    ) -> tuple[str, list[str]]:
        id_feature = self.config.log.id_feature
        ids = []
        if batch.rows is not None:
            for row in batch.rows:
                entry = row.get(id_feature)
                ids.append(entry.first.decode("utf-8", "replace")
                           if entry is not None and entry.first is not None else None)
        for example in batch.examples or ():
            features = example.features.feature
            f = features[id_feature] if id_feature and id_feature in features else None
            ids.append(f.bytes_list.value[0].decode("utf-8", "replace")
                       if f is not None and f.bytes_list.value else None)
        request_id = ids[0] if len(ids) == 1 and ids[0] else (client_id or uuid.uuid4().hex)
        return request_id, [x or f"{request_id}/{i}" for i, x in enumerate(ids)]

    def handle(self, api: str, request, client_id: str | None = None) -> tuple[Any, str]:
        """(A's response, the request id); raises ServingError with the status to answer.
        `handle_bytes` is the same with the response as the bytes A sent."""
        return self._handle(api, request, client_id)[:2]

    def handle_bytes(self, api: str, request, client_id: str | None = None
                     ) -> tuple[bytes, str]:
        response, request_id, data = self._handle(api, request, client_id)
        return data, request_id

    def _handle(self, api: str, request, client_id: str | None) -> tuple[Any, str, bytes]:
        m = self.metrics
        start = time.perf_counter()
        request_id = client_id or ""
        code = "OK"
        try:
            snapshot = self.snapshot  # this request's, whatever a switch does meanwhile
            batch = self._examples(api, request)
            request_id, example_ids = self._request_id(batch, client_id)
            m.examples.inc(len(example_ids))
            t = time.perf_counter()
            if batch.rows is not None:
                decorated, decoration = snapshot.decorator.decorate_read(batch.rows,
                                                                         batch.serialized)
            else:
                decorated, decoration = snapshot.decorator.decorate(batch.examples,
                                                                    batch.serialized)
            if batch.input_name is not None:
                tensor = request.inputs[batch.input_name]
                del tensor.string_val[:]
                tensor.string_val.extend(decorated)
            else:  # Classify/Regress carry parsed examples: merge the fragments into them
                for example, fragments in zip(batch.examples, decoration.fragments,
                                              strict=True):
                    for fragment in fragments:
                        example.MergeFromString(fragment.data)
            t2 = time.perf_counter()
            m.stage["decorate"].observe(t2 - t)
            if batch.rows is not None:
                violations = self.validator.validate_read(batch.rows, decoration.fragments)
            else:
                violations = self.validator.validate_batch(batch.examples, decoration.fragments)
            verdict = self._verdict(len(example_ids), violations, decoration.unknown)
            m.stage["validate"].observe(time.perf_counter() - t2)
            if verdict.get("rejected"):
                m.rejected.inc()
                self._log(api, request, None, request_id, example_ids, verdict,
                          ("INVALID_ARGUMENT", verdict["rejected"]), sources=snapshot.versions)
                raise InvalidArgument(verdict["rejected"])
            response, response_bytes = self._predict(api, request, request_id, example_ids,
                                                     verdict, snapshot.versions)
            if self.mirror is not None:
                t = time.perf_counter()
                self.mirror.submit(api, request, request_id, example_ids)
                m.stage["mirror"].observe(time.perf_counter() - t)
            return response, request_id, response_bytes
        except ServingError as e:
            code = e.code.name
            if e.code == grpc.StatusCode.NOT_FOUND:
                m.bad_requests.labels("unknown_entity").inc()
            elif e.code == grpc.StatusCode.INVALID_ARGUMENT:
                m.bad_requests.labels("invalid_argument").inc()
            raise
        finally:
            m.requests.labels(api, code).inc()
            m.stage["total"].observe(time.perf_counter() - start)

    def _verdict(self, examples: int, violations: dict[int, list[str]],
                 unknown: dict[int, list[str]]) -> dict:
        verdict: dict[str, Any] = {}
        if violations:
            verdict["violations"] = {str(i): v for i, v in violations.items()}
        if unknown:
            verdict["unknown_entities"] = {str(i): v for i, v in unknown.items()}
            for keys in unknown.values():
                for key in keys:
                    self.metrics.unknown_entities.labels(key.split("=", 1)[0]).inc()
        features = []  # one entry per (example, violated feature)
        refused = []
        for i, found in violations.items():
            seen = set()
            for violation in found:
                feature, anomaly = violation.split(":", 1)
                if feature not in seen:
                    seen.add(feature)
                    features.append(feature)
                self.metrics.violations.labels(feature, anomaly).inc()
                if feature in self.reject_features:
                    refused.append(f"example {i}: {violation}")
        self.window.add(examples, features)
        if refused:
            verdict["rejected"] = ("the request violates the schema: "
                                   + "; ".join(f"example {i}: {', '.join(v)}"
                                               for i, v in sorted(violations.items())))
        return verdict

    def _predict(self, api: str, request, request_id: str, example_ids: list[str],
                 verdict: dict, sources: dict[str, str]):
        """(A's response, its bytes as they go back to the caller)."""
        requested = self._mapped(request)
        request_bytes = request.SerializeToString()
        t = time.perf_counter()
        try:
            response_bytes = self._raw[api](request_bytes, timeout=self.config.primary.timeout_s)
        except grpc.RpcError as e:
            seconds = time.perf_counter() - t
            self.metrics.stage["predict"].observe(seconds)
            self.metrics.primary_errors.labels(e.code().name).inc()
            message = e.details() or e.code().name
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                message = (f"the primary model server {self.config.primary.address} is "
                           f"unavailable: {message}")
            self._log(api, request, None, request_id, example_ids, verdict,
                      (e.code().name, message), seconds, request_bytes=request_bytes,
                      sources=sources)
            raise Status(e.code(), message) from None
        seconds = time.perf_counter() - t
        self.metrics.stage["predict"].observe(seconds)
        response = RESPONSES[api].FromString(response_bytes)
        self._log(api, request, response, request_id, example_ids, verdict, None, seconds,
                  request_bytes=request_bytes, response_bytes=response_bytes, sources=sources)
        if requested and requested != response.model_spec.name:
            response.model_spec.name = requested
            response_bytes = response.SerializeToString()
        return response, response_bytes

    def _log(self, api, request, response, request_id, example_ids, verdict, error,
             seconds: float | None = None, request_bytes: bytes | None = None,
             response_bytes: bytes | None = None, sources: dict[str, str] | None = None
             ) -> None:
        if self.writer is None or not sampled(request_id, self.config.log.sample_percent):
            return
        t = time.perf_counter()
        version = response.model_spec.version.value if response is not None else 0
        try:
            record = make_record(
                request=request, response=response, request_bytes=request_bytes,
                response_bytes=response_bytes, model_name=request.model_spec.name,
                model_version=version, signature_name=(
                    response.model_spec.signature_name if response is not None
                    else request.model_spec.signature_name),
                request_id=request_id, example_ids=example_ids, role=PRIMARY,
                verdict=verdict, sources=sources, error=error,
                latency_ms=None if seconds is None else seconds * 1000,
                sampling_rate=self.config.log.sample_percent / 100)
            self.metrics.log_bytes.inc(self.writer.write(record))
            self.metrics.log_records.inc()
        except OSError as e:
            # The answer still goes out; the failure is loud in the metrics and the log.
            self.metrics.log_errors.inc()
            log.error("request log write failed: %s", e)
        self.metrics.stage["log"].observe(time.perf_counter() - t)

    # ---- pass-through --------------------------------------------------------------------

    def _mapped(self, request):
        """The client's model name; the request now names the primary's model, and the
        configured label when the client named no version."""
        requested = request.model_spec.name
        if self.config.primary.model_name:
            request.model_spec.name = self.config.primary.model_name
        if self.config.primary.version_label and \
                request.model_spec.WhichOneof("version_choice") is None:
            request.model_spec.version_label = self.config.primary.version_label
        return requested

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        requested = self._mapped(request)
        try:
            response = self.primary.GetModelMetadata(request,
                                                     timeout=self.config.primary.timeout_s)
        except grpc.RpcError as e:
            raise Status(e.code(), e.details() or e.code().name) from None
        if requested:
            response.model_spec.name = requested
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest):
        self._mapped(request)
        try:
            return self.primary_models.GetModelStatus(request,
                                                      timeout=self.config.primary.timeout_s)
        except grpc.RpcError as e:
            raise Status(e.code(), e.details() or e.code().name) from None

    def close(self) -> None:
        self.window.stop()
        if self.mirror is not None:
            self.mirror.close()
        if self.writer is not None:
            self.writer.close()
        if self.snapshot.source is not None:
            self.snapshot.source.close()
        self._channel.close()

