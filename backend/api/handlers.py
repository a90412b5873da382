"""Every error becomes a JSON body with a status code here, in one place (no tracebacks leak)."""
from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import BackendError, StoreUnavailable, Unauthorized

log = logging.getLogger(__name__)


def _backend_error(exc: BackendError):
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Basic realm="llm-labeling-backend"'
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def _http_error(exc: HTTPException):
    """Werkzeug's own errors (404 route, 405 method) as JSON, keeping their headers (a 405's Allow)."""
    response = jsonify({"error": (exc.name or "error").lower().replace(" ", "_"), "message": exc.description})
    response.status_code = exc.code or 500
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _store_down(exc: redis.ConnectionError | redis.TimeoutError):
    """Redis down or restarting mid-request (after the client's own retries): a 503, never a 500 or
    a 2xx, so that a webhook sender knows the event was not stored."""
    return _backend_error(StoreUnavailable(f"Redis is unavailable ({type(exc).__name__}); retry shortly"))


def _unexpected(exc: Exception):
    log.exception("unexpected error")
    response = jsonify({"error": "internal_error", "message": f"{type(exc).__name__}: see the server log"})
    response.status_code = 500
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(BackendError, _backend_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.ConnectionError, _store_down)
    app.register_error_handler(redis.TimeoutError, _store_down)
    app.register_error_handler(Exception, _unexpected)
