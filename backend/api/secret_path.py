"""WEBHOOK_SECRET as a secret path prefix: connect Label Studio to http://host:9090/<secret> and
every route is also served under /<secret>/...; /webhook is then accepted only there, because
Label Studio's event webhooks carry no credentials of their own."""
from __future__ import annotations

import hmac

SECRET_OK = "llmlb.webhook_secret_ok"


class SecretPathMiddleware:
    def __init__(self, app, secret: str):
        self.app = app
        self.prefix = f"/{secret}" if secret else ""

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        ok = False
        if self.prefix:
            head, sep, rest = path[1:].partition("/")
            if hmac.compare_digest(f"/{head}".encode(), self.prefix.encode()):
                environ["PATH_INFO"] = "/" + rest if sep else "/"
                ok = True
        environ[SECRET_OK] = ok
        return self.app(environ, start_response)
