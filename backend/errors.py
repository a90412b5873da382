"""Named errors, each mapped to one HTTP status by api/handlers.py (never a bare 500 with a traceback)."""
from __future__ import annotations


class BackendError(Exception):
    """Base of every error this service raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class ConfigurationError(BackendError):
    """A setting is missing or malformed; raised at start-up."""

    code = "configuration_error"


class BadRequest(BackendError):
    status = 400
    code = "bad_request"


class LabelConfigError(BadRequest):
    """The Label Studio label config cannot be parsed or has nothing we can predict."""

    code = "invalid_label_config"


class Unauthorized(BackendError):
    status = 401
    code = "unauthorized"


class NotFound(BackendError):
    status = 404
    code = "not_found"


class PayloadTooLarge(BackendError):
    status = 413
    code = "payload_too_large"


class EngineUnavailable(BackendError):
    """The LLM is still loading or failed to load; Label Studio retries a 503 later."""

    status = 503
    code = "engine_unavailable"


class EngineError(BackendError):
    """The LLM failed while scoring (e.g. the prompt does not fit its context)."""

    status = 502
    code = "engine_error"
