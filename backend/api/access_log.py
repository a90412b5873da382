"""gunicorn's logger with the webhook secret taken out of every line it writes.

WEBHOOK_SECRET is a path segment (secret_path.py), and gunicorn writes each request line with its
raw URI to the access log (and, at debug level, the path to the error log): whoever reads the logs
could otherwise post webhooks. `serve` (supervisor.gunicorn_command) and the Docker image pass
`--logger-class backend.api.access_log.RedactingLogger`.
"""
from __future__ import annotations

import logging
import os

from gunicorn.glogging import Logger

from ..settings import webhook_secret

REDACTED = "***"


class RedactSecrets(logging.Filter):
    """Replaces each secret in a record's message and traceback with ***. The secret is URL-safe
    (settings.py refuses other characters), so it appears in a raw URI exactly as configured."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class RedactingLogger(Logger):
    """gunicorn.glogging.Logger whose error and access logs pass through RedactSecrets. setup()
    also runs on a configuration reload, so the filter is replaced, never stacked."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        secret = webhook_secret(os.environ)
        for log in (self.error_log, self.access_log):
            for old in [f for f in log.filters if isinstance(f, RedactSecrets)]:
                log.removeFilter(old)
            if secret:
                log.addFilter(RedactSecrets([secret]))
