"""The official `openai` SDK client, configured once per engine: timeouts, retries, named errors.

Retries are the SDK's own (exponential backoff 0.5 s → 8 s with jitter, Retry-After honoured up
to 2 minutes) on connection errors, timeouts, 408/409/429 and 5xx; 4xx are never retried. One
thing the SDK cannot know is that some 500s are deterministic: llama-cpp-python answers a request
it cannot validate (e.g. the OpenAI `json_schema` response format) with a 500 whose body is a
validation error, and the same request would fail the same way. A response hook marks those with
the SDK's own `x-should-retry: false` header, so they fail at once instead of being replayed.

After the retry budget, SDK exceptions become the named errors of backend/errors.py (mapped to
HTTP statuses by api/handlers.py), with the server's own message.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import openai

from ..errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

PLACEHOLDER_API_KEY = "sk-no-key-required"  # local servers accept any key; the SDK wants one
# Bodies of 5xx answers that a retry cannot fix (llama-cpp-python's pydantic validation errors,
# OpenAI-style invalid-request errors sent with a 5xx status).
DETERMINISTIC_5XX_MARKERS = ("validation error", "invalid_request_error", "Input should be")
DETERMINISTIC_5XX_STATUSES = (501, 505)


def is_deterministic_failure(status: int, body: str) -> bool:
    return status in DETERMINISTIC_5XX_STATUSES or any(m in body for m in DETERMINISTIC_5XX_MARKERS)


def _mark_deterministic_failures(response) -> None:
    if response.status_code < 500:
        return
    response.read()
    if is_deterministic_failure(response.status_code, response.text):
        response.headers["x-should-retry"] = "false"


def make_client(base_url: str, api_key: str, *, timeout_s: float, max_retries: int) -> openai.OpenAI:
    """One SDK client (it keeps a connection pool); built by the engine, never at module level."""
    import httpx2  # the transport of openai>=3 (the SDK depends on it)

    transport_log = logging.getLogger("httpx2")
    if transport_log.level == logging.NOTSET:  # one INFO line per request would flood the service log
        transport_log.setLevel(logging.WARNING)
    timeout = httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s))
    http_client = openai.DefaultHttpxClient(timeout=timeout, event_hooks={"response": [_mark_deterministic_failures]})
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key or PLACEHOLDER_API_KEY,
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
    )


def _server_message(exc: openai.APIStatusError) -> str:
    try:
        body = exc.response.json()
    except (ValueError, AttributeError):
        text = getattr(exc.response, "text", "") or ""
        return text.strip()[:300] or str(exc)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    return json.dumps(body)[:300]


def _retry_after(exc: openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


@contextmanager
def named_errors(where: str, *, retries: int, timeout_s: float) -> Iterator[None]:
    """Turn what the SDK raises after its retries into a named error saying what failed where."""
    budget = f"{retries + 1} attempt(s)"
    try:
        yield
    except openai.APITimeoutError as exc:
        raise UpstreamTimeout(f"{where}: no answer within OPENAI_TIMEOUT={timeout_s:g} s ({budget})") from exc
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise UpstreamUnavailable(
            f"{where}: cannot reach the LLM server or it dropped the connection ({budget}): "
            f"{type(cause).__name__}: {cause}"
        ) from exc
    except openai.RateLimitError as exc:
        raise UpstreamRateLimited(f"{where}: rate limited (429) after {budget}: {_server_message(exc)}",
                                  retry_after=_retry_after(exc)) from exc
    except openai.APIStatusError as exc:
        status = exc.status_code
        message = f"{where}: the LLM server answered {status}: {_server_message(exc)}"
        if status >= 500 and exc.response.headers.get("x-should-retry") != "false":
            raise UpstreamUnavailable(f"{message} (after {budget})") from exc
        raise UpstreamError(message) from exc
    except openai.OpenAIError as exc:  # e.g. a response that does not parse
        raise UpstreamError(f"{where}: {type(exc).__name__}: {exc}") from exc
