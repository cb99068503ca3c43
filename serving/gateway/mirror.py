"""Gateway: the mirror, live shadow traffic to model B that never touches model A's answer.

Requests are handed over after A has answered, through a bounded queue: when B is slow or
gone, the queue fills and further mirror calls are dropped and counted, never waited for.
When B is down (calls fail UNAVAILABLE or time out in a row) the mirror stops trying for a
while, doubling the pause up to 30 s, so a dead shadow costs the gateway no work per request.
B's answer (or error) goes to the request log as a second record with the request's id.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tandem.schemas.request_log import SHADOW, make_record, sampled
from tandem.serving.gateway.monitor import GatewayMetrics

log = logging.getLogger("tandem.gateway")
_STOP = object()


class Mirror:
    def __init__(self, address: str, model_name: str, *, version_label: str = "",
                 sample_percent: float,
                 queue_size: int, timeout_s: float, workers: int, metrics: GatewayMetrics,
                 writer=None, log_percent: float = 100.0):
        self.address, self.model_name, self.version_label = address, model_name, version_label
        self.sample_percent, self.timeout_s = sample_percent, timeout_s
        self.metrics, self.writer, self.log_percent = metrics, writer, log_percent
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"mirror-{i}")
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()
        self.sent = self.dropped = self.failed = 0
        self._closing = False
        self._failures_in_row = 0
        self._paused_until = 0.0
        self._pause_s = 0.0

    def submit(self, api: str, request, request_id: str, example_ids: list[str]) -> bool:
        """Queue a copy of `request` for B; False when it was not mirrored (sampled out or
        dropped)."""
        if not sampled(request_id, self.sample_percent):
            return False
        if self._paused_until and time.monotonic() < self._paused_until:
            self._drop("shadow_down")
            return False
        try:
            self._queue.put_nowait((api, request, request_id, example_ids))
        except queue.Full:
            self._drop("queue_full")
            return False
        self.metrics.mirror_depth.set(self._queue.qsize())
        return True

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        self.metrics.mirror_dropped.labels(reason).inc()

    def _outcome(self, code: str) -> None:
        """Pause mirroring while B looks down: 5 failures in a row to start, then the pause
        doubles (1 s to 30 s) until a call succeeds."""
        if code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            self._failures_in_row, self._pause_s, self._paused_until = 0, 0.0, 0.0
            return
        self._failures_in_row += 1
        if self._failures_in_row >= 5:
            self._pause_s = min(30.0, max(1.0, 2 * self._pause_s))
            self._paused_until = time.monotonic() + self._pause_s
            self._failures_in_row = 0
            log.warning("shadow %s failing (%s): mirroring paused for %gs", self.address,
                        code, self._pause_s)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self.metrics.mirror_depth.set(self._queue.qsize())
            if self._closing:
                continue  # shutting down: what is still queued is not sent
            try:
                self._call(*item)
            except Exception:  # noqa: BLE001 - a mirror failure is counted, never raised
                if not self._closing:
                    log.exception("mirror call failed")

    def _call(self, api: str, request, request_id: str, example_ids: list[str]) -> None:
        request.model_spec.name = self.model_name
        request.model_spec.ClearField("version_choice")
        if self.version_label:
            request.model_spec.version_label = self.version_label
        method = {"predict": self._stub.Predict, "classify": self._stub.Classify,
                  "regress": self._stub.Regress}[api]
        start = time.perf_counter()
        response, error = None, None
        try:
            response = method(request, timeout=self.timeout_s)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
            error = (code, e.details() or "")
            self.failed += 1
        seconds = time.perf_counter() - start
        self._outcome(code)
        self.sent += 1
        self.metrics.mirror_requests.labels(code).inc()
        self.metrics.mirror_seconds.observe(seconds)
        if self.writer is None or not sampled(request_id, self.log_percent):
            return
        logged = type(request)(model_spec=request.model_spec)  # the examples are in A's record
        version = response.model_spec.version.value if response is not None else 0
        record = make_record(
            request=logged, response=response, model_name=self.model_name,
            model_version=version, signature_name=request.model_spec.signature_name,
            request_id=request_id, example_ids=example_ids, role=SHADOW, error=error,
            latency_ms=seconds * 1000, sampling_rate=self.log_percent / 100)
        self.metrics.log_bytes.inc(self.writer.write(record))
        self.metrics.log_records.inc()

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the workers; queued calls still waiting after `wait_s` are abandoned."""
        deadline = time.monotonic() + wait_s
        self._closing = True
        for _ in self._threads:
            try:
                self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._channel.close()
