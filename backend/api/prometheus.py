"""Prometheus text metrics, kept per process (the default deployment is one web process)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from flask import Flask, g, request


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.request_seconds: dict[str, float] = defaultdict(float)
        self.tasks_predicted = 0
        self.predict_seconds = 0.0
        self.predict_calls = 0

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.request_seconds[endpoint] += seconds

    def observe_predict(self, n_tasks: int, seconds: float) -> None:
        with self._lock:
            self.tasks_predicted += n_tasks
            self.predict_seconds += seconds
            self.predict_calls += 1

    def render(self, gauges: dict[str, float], counters: dict[str, tuple[str, float]] | None = None) -> str:
        """Prometheus text; `counters` are name → (help, value) kept elsewhere (e.g. LLM token usage)."""
        lines = [
            "# HELP llmlb_http_requests_total HTTP requests by endpoint and status.",
            "# TYPE llmlb_http_requests_total counter",
        ]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'llmlb_http_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += ["# HELP llmlb_http_request_seconds_total Time spent serving requests.",
                      "# TYPE llmlb_http_request_seconds_total counter"]
            for endpoint, s in sorted(self.request_seconds.items()):
                lines.append(f'llmlb_http_request_seconds_total{{endpoint="{endpoint}"}} {s:.6f}')
            lines += [
                "# TYPE llmlb_tasks_predicted_total counter",
                f"llmlb_tasks_predicted_total {self.tasks_predicted}",
                "# TYPE llmlb_predict_seconds_total counter",
                f"llmlb_predict_seconds_total {self.predict_seconds:.6f}",
                "# TYPE llmlb_predict_calls_total counter",
                f"llmlb_predict_calls_total {self.predict_calls}",
            ]
        for name, (help_text, value) in (counters or {}).items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


def init_app(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def _start_timer():
        g.llmlb_t0 = time.monotonic()

    @app.after_request
    def _record(response):
        t0 = getattr(g, "llmlb_t0", None)
        if t0 is not None:
            metrics.observe_request(request.endpoint or "unknown", response.status_code, time.monotonic() - t0)
        return response


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
