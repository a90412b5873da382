"""/metrics through prometheus_client, right with any number of gunicorn workers.

A scrape reaches one gunicorn worker, so per-process numbers are wrong as soon as WEB_WORKERS > 1.
With PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported (`serve` and gunicorn's
`on_starting` hook in backend.supervisor see to it), every process (web workers and the RQ
worker) writes its values to files there, and /metrics sums the files of all of them. Without it
(tests, `flask run`) values stay in memory, in a registry each app owns: building many apps in
one process never registers a name twice. The queue's sizes are read from Redis at scrape time
and left out, not failed, when Redis does not answer.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

log = logging.getLogger(__name__)

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 100, 180)
PREDICT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 100, 180)
UNMATCHED = "<unmatched>"  # the route label of a 404/405: never the raw path (cardinality, secrets)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other is "other"


def multiprocess() -> bool:
    """Whether prometheus_client writes values to PROMETHEUS_MULTIPROC_DIR: it decided so when it
    was imported, so its choice is asked, not the environment as it is now."""
    return values.ValueClass is not values.MutexValue


class Metrics:
    """The web process's series; `render` adds what is read at scrape time."""

    def __init__(self, queue: Queue | None = None):
        self.multiprocess = multiprocess()
        self.queue = queue  # on a client that gives up fast: a scrape must not hang on Redis
        self._registry = CollectorRegistry()
        # multiprocess: registered nowhere, the values are in files and collected from there
        own = self._own = None if self.multiprocess else self._registry
        self.requests = Counter("llmlb_http_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=own)
        self.request_seconds = Counter("llmlb_http_request_seconds", "Time spent serving requests.",
                                       ["endpoint"], registry=own)
        self.request_duration = Histogram(
            "llmlb_http_request_duration_seconds", "Request latency by route (Flask URL rule), method and status.",
            ["route", "method", "status"], buckets=HTTP_BUCKETS, registry=own)
        self.tasks_predicted = Counter("llmlb_tasks_predicted", "Tasks predicted by /predict.", registry=own)
        self.predict_seconds = Counter("llmlb_predict_seconds", "Time spent predicting in /predict.", registry=own)
        self.predict_calls = Counter("llmlb_predict_calls", "/predict calls that answered predictions.", registry=own)
        self.predict_duration = Histogram("llmlb_predict_duration_seconds", "Time to predict one /predict batch.",
                                          buckets=PREDICT_BUCKETS, registry=own)
        self.engine_ready = Gauge("llmlb_engine_ready", "1 when the model is loaded (every live web process).",
                                  multiprocess_mode="livemin", registry=own)
        self.engine_load_seconds = Gauge("llmlb_engine_load_seconds", "How long loading the model took.",
                                         multiprocess_mode="livemax", registry=own)
        self._engine = {"llmlb_engine_ready": self.engine_ready, "llmlb_engine_load_seconds": self.engine_load_seconds}
        self._lock = threading.Lock()
        self._usage: dict[str, tuple[Counter, float]] = {}  # name → (counter, the engine total already counted)

    def observe_request(self, endpoint: str, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).inc(seconds)
        self.request_duration.labels(route, method, str(status)).observe(seconds)

    def observe_predict(self, n_tasks: int, seconds: float) -> None:
        self.tasks_predicted.inc(n_tasks)
        self.predict_seconds.inc(seconds)
        self.predict_calls.inc()
        self.predict_duration.observe(seconds)

    def observe_engine(self, gauges: dict[str, float]) -> None:
        for name, value in gauges.items():
            if name in self._engine:
                self._engine[name].set(value)

    def sync_usage(self, counters: dict[str, tuple[str, float]]) -> None:
        """Add what an engine's running totals (usage_counters) grew by since the last call: each
        process adds its own growth, so the files sum to the totals of every process."""
        with self._lock:
            for name, (help_text, total) in counters.items():
                if name not in self._usage:
                    self._usage[name] = (Counter(name, help_text, registry=self._own), 0.0)
                counter, counted = self._usage[name]
                if total > counted:
                    counter.inc(total - counted)
                    self._usage[name] = (counter, total)

    def render(self, gauges: dict[str, float], counters: dict[str, tuple[str, float]] | None = None) -> str:
        """Prometheus text: every process's series (or this one's), with this process's engine
        `gauges` and usage `counters` brought up to date first, and the queue read now."""
        self.observe_engine(gauges)
        self.sync_usage(counters or {})
        registry = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(registry)
        else:
            registry.register(_Collected(self._registry))
        if self.queue is not None:
            registry.register(QueueCollector(self.queue))
        return generate_latest(registry).decode()


class _Collected:
    """Another registry's series, for a registry built per scrape."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class QueueCollector:
    """The RQ queue's jobs by state, read at scrape time in one round trip; nothing when Redis
    does not answer (the rest of /metrics still does)."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def describe(self):
        return []  # read at scrape time only: registering must not touch Redis

    def collect(self):
        q = self.queue
        registries = {"started": StartedJobRegistry, "scheduled": ScheduledJobRegistry,
                      "deferred": DeferredJobRegistry, "failed": FailedJobRegistry}
        keys = {state: cls(queue=q).key for state, cls in registries.items()}
        try:
            pipe = q.connection.pipeline(transaction=False)
            pipe.llen(q.key)
            for k in keys.values():
                pipe.zcard(k)
            counts = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("/metrics: the queue's sizes are left out, Redis did not answer: %s", exc)
            return
        family = GaugeMetricFamily("llmlb_queue_jobs", "RQ jobs by state (queued, started, scheduled, deferred, "
                                   "failed), read from Redis at scrape time.", labels=["queue", "state"])
        for state, n in zip(["queued", *keys], counts):
            family.add_metric([q.name, state], n)
        yield family


def init_app(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def _start_timer():
        g.llmlb_t0 = time.monotonic()

    @app.after_request
    def _record(response):
        t0 = getattr(g, "llmlb_t0", None)
        if t0 is not None:
            route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
            method = request.method if request.method in METHODS else "other"
            metrics.observe_request(request.endpoint or "unknown", route, method, response.status_code,
                                    time.monotonic() - t0)
        loader = current_app.extensions.get("llmlb.engine_loader")
        if loader is not None:  # each process keeps its own engine's series current in the files
            metrics.observe_engine(engine_gauges(loader))
            metrics.sync_usage(usage_counters(loader.engine))
        return response


def engine_gauges(loader) -> dict[str, float]:
    return {"llmlb_engine_ready": 1 if loader.state == "ready" else 0,
            "llmlb_engine_load_seconds": round(loader.load_seconds or 0.0, 3)}


def usage_counters(engine) -> dict[str, tuple[str, float]]:
    """Token and cost counters of a remote LLM engine (none for the local engine or before it loads)."""
    meter = getattr(engine, "usage", None)
    if meter is None:
        return {}
    total = meter.total()
    counters = {
        "llmlb_llm_requests_total": ("Requests sent to the LLM server.", total.requests),
        "llmlb_llm_prompt_tokens_total": ("Prompt tokens the LLM server reported (usage).", total.prompt_tokens),
        "llmlb_llm_completion_tokens_total": ("Completion tokens the LLM server reported (usage).",
                                              total.completion_tokens),
    }
    if meter.prices.known:
        counters["llmlb_llm_cost_total"] = (
            "Cost of those tokens at LLM_PRICE_PER_1K_PROMPT / LLM_PRICE_PER_1K_COMPLETION.",
            round(meter.prices.cost(total), 8),
        )
    return counters
