"""HTTP basic auth on every route but /health and /webhook when BASIC_AUTH_USER/PASS are set.

Label Studio sends event webhooks without credentials (only START_TRAINING carries them), so
/webhook is exempt here; it is guarded by WEBHOOK_SECRET or by reconciliation with the Label Studio API.
"""
from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from ..errors import Unauthorized

PUBLIC_ENDPOINTS = {"ml.health", "ml.index", "webhook.webhook", "static"}


def _check() -> None:
    settings = current_app.extensions["llmlb.settings"]
    if not settings.auth_enabled or request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return
    auth = request.authorization
    ok = (
        auth is not None
        and auth.type == "basic"
        and hmac.compare_digest((auth.username or "").encode(), settings.basic_auth_user.encode())
        and hmac.compare_digest((auth.password or "").encode(), settings.basic_auth_pass.encode())
    )
    if not ok:
        raise Unauthorized("valid HTTP basic auth credentials are required", field="Authorization")


def init_app(app: Flask) -> None:
    app.before_request(_check)
