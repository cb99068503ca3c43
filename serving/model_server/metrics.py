"""Model server metrics: Prometheus series by model, version and API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """TF Serving labels request metrics by model only; operators comparing a canary with
    stable need the version, so every request series here carries it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tandem_serving_request_count", "Requests handled, by outcome.",
            ["model", "version", "api", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "tandem_serving_request_latency_seconds", "Request latency inside the server.",
            ["model", "version", "api"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.model_events = Counter(
            "tandem_serving_model_events_total", "Version lifecycle events.",
            ["model", "version", "event"], registry=self.registry,
        )
        self.batch_size = Histogram(
            "tandem_serving_batch_size", "Examples per graph call when batching is on.",
            ["model", "version"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.available = Gauge(
            "tandem_serving_version_available", "1 while a version is loaded and serving.",
            ["model", "version"], registry=self.registry,
        )

        self.load = {
            key: Gauge(f"tandem_serving_{key}", help_text, ["model", "version"],
                       registry=self.registry)
            for key, help_text in (
                ("load_seconds", "Time to load and warm a version up."),
                ("memory_bytes", "Resident memory a version added when it loaded."),
                ("warmup_latency_seconds", "Median latency of the version's warmup requests "
                                           "(the first, which traces the graph, left out)."),
                ("warmup_throughput", "Warmup requests per second, one at a time."),
            )}

    def record_load(self, model: str, version: int, stats: dict) -> None:
        names = {"load_seconds": "load_seconds", "memory_bytes": "memory_bytes",
                 "latency_seconds": "warmup_latency_seconds", "throughput": "warmup_throughput"}
        for key, gauge in names.items():
            if key in stats:
                self.load[gauge].labels(model, str(version)).set(stats[key])

    def record_event(self, model: str, version: int, event: str) -> None:
        self.model_events.labels(model, str(version), event).inc()
        if event == "loaded":
            self.available.labels(model, str(version)).set(1)
        elif event == "unloaded":
            self.available.labels(model, str(version)).set(0)

    def observe(self, model: str, version: str, api: str, status: str, seconds: float) -> None:
        self.requests.labels(model, version, api, status).inc()
        if status == "OK":
            self.latency.labels(model, version, api).observe(seconds)

    def observe_batch(self, key: tuple, size: int) -> None:
        model, version, _signature = key
        self.batch_size.labels(model, str(version)).observe(size)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
