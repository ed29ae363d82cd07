"""GET /metrics (Prometheus text format, via prometheus_client): traffic, latency, batch sizes, errors, and
per-model signals that the traffic has moved away from what the model was trained on.

Drift signals, per model: the predicted-label distribution (compare with `tunesmith_training_label_share`,
the training set's), the top-label confidence, and, once clients send feedback, the share of feedback that
agrees with the answer the model gave (the live model's accuracy on the requests it was corrected on)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..runs import rundir
from ..runs.collect import agrees

ROUTES = {  # a path outside these is counted as "other": a client cannot add label values (metric series) at will
    "/v1/classify",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/feedback",
    "/v1/models",
    "/health",
    "/metrics",
    "/admin/reload",
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Monitor:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "tunesmith_requests", "Requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "tunesmith_request_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch = Histogram(
            "tunesmith_batch_size", "Inputs per batched model call", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.inputs = Counter("tunesmith_inputs", "Inputs answered", ["model", "version"], registry=r)
        self.predicted = Counter("tunesmith_predicted_label", "Top predicted label", ["model", "label"], registry=r)
        self.confidence = Histogram(
            "tunesmith_confidence", "Top-label probability", ["model"], buckets=CONFIDENCE_BUCKETS, registry=r
        )
        self.training_share = Gauge(
            "tunesmith_training_label_share", "Share of each label in the training data", ["model", "label"], registry=r
        )
        self.version = Gauge("tunesmith_model_version", "The version being served", ["model"], registry=r)
        self.feedback = Counter("tunesmith_feedback", "Feedback received", ["model"], registry=r)
        self.agreed = Counter(
            "tunesmith_feedback_agreed", "Feedback that agreed with the answer given", ["model", "version"], registry=r
        )
        self.corrected = Counter(
            "tunesmith_feedback_checked", "Feedback comparable with the answer given", ["model", "version"], registry=r
        )
        self.swaps = Counter("tunesmith_swaps", "New versions swapped in without a restart", ["model"], registry=r)
        self.checked = Counter(
            "tunesmith_drift_checked", "Inputs compared with the training texts (serve/drift.py)", ["model"], registry=r
        )
        self.far = Counter(
            "tunesmith_far_from_training",
            "Inputs further from their label's training centroid than 95% of the training texts",
            ["model"],
            registry=r,
        )

    def model_loaded(self, run) -> None:
        """A model (re)loaded: its version, and the label shares of its training data (from the data check)."""
        self.version.labels(run.name).set(run.version)
        counts = _training_counts(run.run_dir)
        total = sum(counts.values())
        for label, n in counts.items():
            self.training_share.labels(run.name, str(label)).set(n / total)

    def answered(self, run, rows: list[dict]) -> None:
        self.inputs.labels(run.name, str(run.version)).inc(len(rows))
        for row in rows:
            if "label" in row:
                self.predicted.labels(run.name, str(row["label"])).inc()
                self.confidence.labels(run.name).observe(float(row["score"]))
            if "far_from_training" in row:
                self.checked.labels(run.name).inc()
                if row["far_from_training"]:
                    self.far.labels(run.name).inc()

    def feedback_for(self, run_name: str, version: int, kind: str, value, answer) -> None:
        self.feedback.labels(run_name).inc()
        same = agrees(kind, value, answer)
        if same is not None:
            self.corrected.labels(run_name, str(version)).inc()
            if same:
                self.agreed.labels(run_name, str(version)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


def _training_counts(run_dir) -> dict:
    """Label counts of the training split, as the data check recorded them (empty where it did not run)."""
    check = rundir.read_json(run_dir / "data_check.json")
    for dataset in check.get("datasets") or []:
        labels = (dataset.get("labels") or {}).get("train")
        if isinstance(labels, dict) and labels:
            return {k: v for k, v in labels.items() if isinstance(v, (int, float))}
    return {}


class Measured:
    """ASGI middleware: every request's route, status and time to its last byte (refusals by the key check
    and the size limit included: it wraps them)."""

    def __init__(self, app, monitor: Monitor):
        self.app, self.monitor = app, monitor

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        start, status = time.perf_counter(), {"code": 500}

        async def watched(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.monitor.requests.labels(route, str(status["code"])).inc()
            self.monitor.latency.labels(route).observe(time.perf_counter() - start)
