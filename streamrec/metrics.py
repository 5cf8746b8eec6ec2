"""Prometheus metrics and an HTTP health endpoint for every worker.

Workers keep plain counters in their ``Stats`` on the hot path and this module copies them into
Prometheus metrics at each heartbeat, so exporting costs nothing per event. ``serve`` starts a
small HTTP server (``STREAMREC_METRICS_PORT``; 0 turns it off) with ``/metrics`` in the Prometheus
text format and ``/healthz`` answering 200 while the worker's heartbeat is fresh, 503 otherwise.

>>> m = WorkerMetrics("streams")
>>> m.sync({"learned": 5, "dead_letters": 1}); m.sync({"learned": 7, "dead_letters": 1})
>>> m.counters["learned"]._value.get()
7.0
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: stat name -> help text; every worker exports the ones it has
COUNTERS = {
    "learned": "events learned (clicks and ratings)",
    "dead_letters": "messages sent to the dead-letter topic",
    "malformed_skipped": "malformed enrichment requests skipped (dead-lettered by the embedding worker)",
    "lists_written": "recommendation lists written to Redis",
    "refreshes": "refresh passes completed",
    "early_refreshes": "lists written by the debounced early refresh",
    "redis_failures": "failed Redis writes (retried with backoff)",
    "enrich_requests": "items queued for LLM enrichment",
    "enrichments": "embeddings and tags applied to the model",
    "items": "items processed by an LLM worker",
    "cache_hits": "embedding cache hits",
    "errors": "errors handled without stopping",
    "skipped": "messages passed over as STREAMREC_SKIP_MESSAGES says",
    "output_failures": "failed deliveries or commits of outputs (retried with backoff)",
    "suppressed_outputs": "side outputs of replayed inputs not produced again (committed before)",
    "checkpoint_fallbacks": "restores from the previous checkpoint (the newest was unusable)",
    "fresh_starts": "starts without a checkpoint (everything re-learned)",
    "tuner_promotions": "blend weightings promoted by the self-tuning blend",
}
#: live prequential metrics (streams/quality.py): gauge name -> (its key in the report, help text)
QUALITY = {
    "streamrec_quality_hr10": ("hr@10", "share of evaluated events whose item was in the served top 10"),
    "streamrec_quality_ndcg10": ("ndcg@10", "NDCG@10 of the served lists at the evaluated events"),
    "streamrec_quality_cold_hr10": ("cold_hr@10", "HR@10 on events of items with fewer than 5 earlier events"),
    "streamrec_quality_coverage": ("coverage", "share of the catalogue shown in the evaluated top 10 lists"),
    "streamrec_quality_evaluated": ("evaluated", "evaluated events (of users with an earlier event)"),
}


class WorkerMetrics:
    def __init__(self, worker: str):
        self.registry = CollectorRegistry()
        self.worker = worker
        self.counters = {
            name: Counter(f"streamrec_{name}", text, ["worker"], registry=self.registry).labels(worker)
            for name, text in COUNTERS.items()
        }
        self._seen: dict[str, float] = {}
        self.lag = Gauge("streamrec_consumer_lag", "messages behind the end of the input topics",
                         ["worker"], registry=self.registry).labels(worker)  # fmt: skip
        self.refresh_seconds = Histogram(
            "streamrec_refresh_duration_seconds", "duration of a refresh pass (lists + checkpoint)",
            ["worker"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ).labels(worker)  # fmt: skip
        self.heartbeat = Gauge("streamrec_heartbeat_timestamp_seconds", "last loop heartbeat",
                               ["worker"], registry=self.registry).labels(worker)  # fmt: skip
        self.quality_gauges = {
            key: Gauge(name, text, ["worker", "digest", "window"], registry=self.registry)
            for name, (key, text) in QUALITY.items()
        }
        self.blend_weight = Gauge("streamrec_blend_weight", "the served blend weight of each signal",
                                  ["worker", "signal"], registry=self.registry)  # fmt: skip

    def quality(self, report: dict, weights: dict | None = None) -> None:
        """Set the live quality gauges from ``{"window"|"total": {digest: metrics}}`` (see
        streams/quality.py) and the served blend weights.

        >>> m = WorkerMetrics("streams")
        >>> m.quality({"window": {"d1": {"hr@10": 0.25, "evaluated": 4}}}, {"embedding": 0.5})
        >>> b'streamrec_quality_hr10{digest="d1",window="window",worker="streams"} 0.25' in m.exposition()
        True
        """
        for which, per_digest in report.items():
            for digest, values in per_digest.items():
                for key, gauge in self.quality_gauges.items():
                    if key in values:
                        gauge.labels(self.worker, digest, which).set(values[key])
        for signal, weight in (weights or {}).items():
            self.blend_weight.labels(self.worker, signal).set(weight)

    def sync(self, stats: dict) -> None:
        """Advance the counters to the worker's current totals."""
        for name, value in stats.items():
            counter = self.counters.get(name)
            if counter is None or not isinstance(value, (int, float)):
                continue
            delta = value - self._seen.get(name, 0)
            if delta > 0:
                counter.inc(delta)
                self._seen[name] = value

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics: WorkerMetrics, port: int, healthy: Callable[[], bool], host: str = "0.0.0.0"):
    """Serve ``/metrics`` and ``/healthz`` on ``port`` in a daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.startswith("/metrics"):
                body, status, ctype = metrics.exposition(), 200, CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                ok = healthy()
                body, status, ctype = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep request logs out of the worker's log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


def write_heartbeat(path: Path, body: dict) -> None:
    """Atomically replace a worker's heartbeat file (what ``--health`` and container checks read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def heartbeat_health(path: Path, max_age_s: float, live: bool = False) -> tuple[bool, str]:
    """Is the heartbeat at ``path`` fresh, and the worker not ``degraded`` (retrying outputs the
    broker refuses)? With ``live``, a fresh heartbeat is enough: a degraded worker is alive and
    recovers by itself, so a liveness probe must not restart it. Returns (healthy, a line why)."""
    try:
        beat = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"no heartbeat at {path}"
    age = time.time() - float(beat.get("ts", 0))
    state = "healthy" if age <= max_age_s else "stale"
    if state == "healthy" and beat.get("degraded") and not live:
        state = f"degraded (outputs not delivered for {beat.get('output_failing_s', 0)}s, retrying)"
    return state == "healthy", f"{state}: last heartbeat {age:.1f}s ago, {json.dumps(beat)}"
