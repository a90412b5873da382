"""Token accounting of a remote LLM: totals for /metrics and eval, and per-task scopes for predictions.

A remote server bills (or at least spends) prompt and completion tokens per request, as its
`usage` field reports them. The engine records every response here; the labeling service opens a
scope around one task's scoring so that the task's own tokens end up in its prediction. Scopes are
thread-local because tasks of one /predict are scored on a thread pool, one task per thread.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.requests += 1

    def minus(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens - other.prompt_tokens,
                     self.completion_tokens - other.completion_tokens,
                     self.requests - other.requests)


@dataclass(frozen=True)
class Prices:
    """Price per 1,000 tokens (LLM_PRICE_PER_1K_PROMPT / _COMPLETION), in whatever currency you bill in."""

    per_1k_prompt: float = 0.0
    per_1k_completion: float = 0.0

    @property
    def known(self) -> bool:
        return bool(self.per_1k_prompt or self.per_1k_completion)

    def cost(self, usage: Usage) -> float:
        return usage.prompt_tokens / 1000 * self.per_1k_prompt + usage.completion_tokens / 1000 * self.per_1k_completion


class UsageMeter:
    """Thread-safe running totals, plus nested per-thread scopes (`with meter.scope() as usage:`)."""

    def __init__(self, prices: Prices | None = None):
        self.prices = prices or Prices()
        self._lock = threading.Lock()
        self._total = Usage()
        self._local = threading.local()

    def record(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        p, c = int(prompt_tokens or 0), int(completion_tokens or 0)
        with self._lock:
            self._total.add(p, c)
        for scope in getattr(self._local, "scopes", ()):
            scope.add(p, c)

    @contextmanager
    def scope(self) -> Iterator[Usage]:
        usage = Usage()
        scopes = self._local.__dict__.setdefault("scopes", [])
        scopes.append(usage)
        try:
            yield usage
        finally:
            scopes.remove(usage)

    def total(self) -> Usage:
        with self._lock:
            return Usage(self._total.prompt_tokens, self._total.completion_tokens, self._total.requests)

    def to_dict(self, usage: Usage) -> dict:
        """What a prediction or a report shows: tokens, requests and, with a price table, the cost."""
        out = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
               "requests": usage.requests}
        if self.prices.known:
            out["cost"] = round(self.prices.cost(usage), 8)
        return out
