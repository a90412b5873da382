"""Named errors, each mapped to one HTTP status by api/handlers.py (never a bare 500 with a traceback)."""
from __future__ import annotations


class BackendError(Exception):
    """Base of every error this service raises on purpose."""

    status = 500
    code = "internal_error"
    retry_after: float | None = None  # seconds; sent as a Retry-After header when set

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


class DatasetError(BackendError):
    """A labelled data set (eval, bench) cannot be used as asked: labels missing from labels.json,
    or a command that does not support its kind (multi-label) yet."""

    code = "invalid_dataset"


class BadRequest(BackendError):
    status = 400
    code = "bad_request"


class LabelConfigError(BadRequest):
    """The Label Studio label config cannot be parsed or has nothing we can predict."""

    code = "invalid_label_config"


class Unauthorized(BackendError):
    status = 401
    code = "unauthorized"


class TooManyRequests(BackendError):
    """A project's budget for this kind of work is spent for now; Retry-After says when it refills."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, field: str | None = None, retry_after: float | None = None):
        super().__init__(message, field=field)
        self.retry_after = retry_after


class NotFound(BackendError):
    status = 404
    code = "not_found"


class PayloadTooLarge(BackendError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BackendError):
    """A body that is not declared as JSON. Browsers post text/plain, form and multipart bodies to
    any origin without a CORS preflight, so accepting them would let any web page post to us."""

    status = 415
    code = "unsupported_media_type"


class StoreUnavailable(BackendError):
    """Redis cannot be reached (down, restarting, loading its data), or a lock in it stayed held:
    the request did not complete, so the caller is told to retry instead of being acknowledged
    (storing an annotation again is idempotent)."""

    status = 503
    code = "store_unavailable"
    retry_after = 5.0


class TunedBodyMissing(BackendError):
    """A version's head reads a fine-tuned embedding body that the store no longer holds (Redis
    lost its data): its predictions cannot be computed. Rolling back to another version mends it."""

    status = 503
    code = "tuned_body_missing"


class LabelStudioUnavailable(BackendError):
    """The Label Studio API could not be read while reconciling ground truth: a refinement job
    fails (and is retried later) rather than train on ground truth Label Studio did not confirm."""

    status = 503
    code = "label_studio_unavailable"


class EngineUnavailable(BackendError):
    """The LLM is still loading or failed to load; Label Studio retries a 503 later."""

    status = 503
    code = "engine_unavailable"


class EngineError(BackendError):
    """The LLM failed while scoring (e.g. the prompt does not fit its context)."""

    status = 502
    code = "engine_error"


class UpstreamError(EngineError):
    """The OpenAI-compatible LLM server refused a request or answered something unusable.

    Retrying the same request would give the same answer (a 4xx, a deterministic 500, a response
    without the fields we asked for), so this is not retried and maps to 502."""

    code = "llm_server_error"


class UpstreamUnavailable(UpstreamError):
    """The LLM server cannot be reached, dropped the connection, or kept failing (5xx) through the
    whole retry budget (OPENAI_MAX_RETRIES). A 503: Label Studio may try again later."""

    status = 503
    code = "llm_server_unavailable"


class UpstreamTimeout(UpstreamUnavailable):
    """No answer within OPENAI_TIMEOUT seconds, on every attempt of the retry budget."""

    status = 504
    code = "llm_server_timeout"


class UpstreamRateLimited(UpstreamUnavailable):
    """The LLM server still answered 429 after the retry budget; its Retry-After is passed on."""

    code = "llm_server_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
