"""Gateway: its Prometheus metrics, and the sliding-window violation-rate alerts.

An alert is per feature: it fires when the share of examples violating the schema on that
feature, over the last `validate.window_s` seconds and at least `validate.min_examples`
examples, passes the feature's threshold; it clears when the rate falls back to the threshold
or below (or the window empties). Each change is a log line, the
`tandem_gateway_alert_firing{feature}` gauge, and a POST to the optional webhook.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("tandem.gateway")
STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STAGES = ("decorate", "validate", "predict", "log", "mirror", "total")


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tandem_gateway_requests", "Requests answered, by API and "
                                "gRPC status code", ["api", "code"], registry=r)
        self.examples = Counter("tandem_gateway_examples", "Examples received", registry=r)
        stage = Histogram("tandem_gateway_stage_seconds", "Time each stage takes per request",
                          ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.stage = {s: stage.labels(s) for s in STAGES}
        self.violations = Counter("tandem_gateway_violations", "Schema violations, by feature "
                                  "and TFDV anomaly type", ["feature", "type"], registry=r)
        self.violation_rate = Gauge("tandem_gateway_violation_rate", "Share of examples "
                                    "violating the schema on a feature, over the alert window",
                                    ["feature"], registry=r)
        self.threshold = Gauge("tandem_gateway_violation_threshold", "Violation rate above "
                               "which a feature's alert fires", ["feature"], registry=r)
        self.alert_firing = Gauge("tandem_gateway_alert_firing", "1 while a feature's "
                                  "violation-rate alert fires", ["feature"], registry=r)
        self.rejected = Counter("tandem_gateway_rejected", "Requests refused by the "
                                "validator", registry=r)
        self.unknown_entities = Counter("tandem_gateway_unknown_entities", "Entity keys no "
                                        "feature source knows", ["key"], registry=r)
        self.bad_requests = Counter("tandem_gateway_bad_requests", "Requests refused as "
                                    "malformed, by reason", ["reason"], registry=r)
        self.primary_errors = Counter("tandem_gateway_primary_errors", "Failed calls to the "
                                      "primary model, by status code", ["code"], registry=r)
        self.mirror_depth = Gauge("tandem_gateway_mirror_queue_depth", "Mirror calls waiting",
                                  registry=r)
        self.mirror_dropped = Counter("tandem_gateway_mirror_dropped", "Mirror calls not made: "
                                      "the queue was full, or the shadow is down",
                                      ["reason"], registry=r)
        for reason in ("queue_full", "shadow_down"):
            self.mirror_dropped.labels(reason)  # exported at 0 from the start
        self.mirror_requests = Counter("tandem_gateway_mirror_requests", "Calls to the shadow "
                                       "model, by status code", ["code"], registry=r)
        self.mirror_seconds = Histogram("tandem_gateway_mirror_seconds", "Shadow model "
                                        "latency", buckets=STAGE_BUCKETS, registry=r)
        self.log_records = Counter("tandem_gateway_log_records", "Request-log records written",
                                   registry=r)
        self.log_bytes = Counter("tandem_gateway_log_bytes", "Request-log bytes written "
                                 "(compressed)", registry=r)
        self.log_errors = Counter("tandem_gateway_log_errors", "Request-log writes that failed",
                                  registry=r)
        self.source_seconds = Histogram("tandem_gateway_source_seconds", "Time one feature "
                                        "source's join takes per request (cache included)",
                                        ["table"], buckets=STAGE_BUCKETS, registry=r)
        self.source_features = Gauge("tandem_gateway_source_features", "1 for each feature a "
                                     "source supplies (its cost is shared among them)",
                                     ["table", "feature"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ViolationWindow:
    """Per-second buckets of (examples, violations per feature) over a sliding window."""

    def __init__(self, thresholds: dict[str, float], window_s: float, min_examples: int,
                 metrics: GatewayMetrics, webhook: str = ""):
        self.thresholds, self.window_s, self.min_examples = thresholds, window_s, min_examples
        self.metrics, self.webhook = metrics, webhook
        self._lock = threading.Lock()
        self._buckets: collections.deque = collections.deque()  # [second, n, Counter]
        self._examples = 0
        self._violations: collections.Counter = collections.Counter()
        self.firing: set[str] = set()
        for feature, threshold in thresholds.items():
            metrics.threshold.labels(feature).set(threshold)
            metrics.alert_firing.labels(feature).set(0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, examples: int, features: Iterable[str], now: float | None = None) -> None:
        """Count a request: its example count and one entry per (example, violated feature)."""
        second = int(now if now is not None else time.time())
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != second:
                self._buckets.append([second, 0, collections.Counter()])
            bucket = self._buckets[-1]
            bucket[1] += examples
            self._examples += examples
            for feature in features:
                bucket[2][feature] += 1
                self._violations[feature] += 1

    def rates(self, now: float | None = None) -> tuple[int, dict[str, float]]:
        """(examples in the window, violation rate per feature)."""
        horizon = (now if now is not None else time.time()) - self.window_s
        with self._lock:
            while self._buckets and self._buckets[0][0] < horizon:
                _, n, counts = self._buckets.popleft()
                self._examples -= n
                self._violations.subtract(counts)
            n = self._examples
            rates = {f: (self._violations[f] / n if n else 0.0) for f in self.thresholds}
        return n, rates

    def evaluate(self, now: float | None = None) -> list[dict]:
        """Update gauges and alert states; returns the changes (also logged and posted)."""
        n, rates = self.rates(now)
        changes = []
        for feature, rate in rates.items():
            self.metrics.violation_rate.labels(feature).set(rate)
            threshold = self.thresholds[feature]
            if feature not in self.firing and n >= self.min_examples and rate > threshold:
                self.firing.add(feature)
                changes.append(self._change(feature, "firing", rate, threshold, n))
            elif feature in self.firing and (n == 0 or (n >= self.min_examples
                                                        and rate <= threshold)):
                self.firing.discard(feature)
                changes.append(self._change(feature, "cleared", rate, threshold, n))
        return changes

    def _change(self, feature: str, state: str, rate: float, threshold: float, n: int) -> dict:
        self.metrics.alert_firing.labels(feature).set(1 if state == "firing" else 0)
        event = {"alert": "FeatureViolationRate", "feature": feature, "state": state,
                 "rate": round(rate, 6), "threshold": threshold, "examples": n,
                 "window_s": self.window_s}
        (log.warning if state == "firing" else log.info)(
            "ALERT %s %s: '%s' violates the schema in %.2f%% of %d examples over the last "
            "%gs (threshold %.2f%%)", "FeatureViolationRate", state.upper(), feature,
            100 * rate, n, self.window_s, 100 * threshold)
        if self.webhook:
            threading.Thread(target=_post, args=(self.webhook, event), daemon=True).start()
        return event

    def start(self, every_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.evaluate()
                except Exception:  # noqa: BLE001 - alerting never stops the gateway
                    log.exception("alert evaluation failed")

        self._thread = threading.Thread(target=loop, daemon=True, name="alerts")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _post(url: str, event: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(event).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - a configured URL
            pass
    except Exception as e:  # noqa: BLE001 - a webhook that fails is logged, not fatal
        log.warning("alert webhook %s failed: %s", url, e)
