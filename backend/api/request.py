"""Small helpers that turn a Flask request into validated plain values (errors name the field)."""
from __future__ import annotations

import re

from flask import request

from ..errors import BadRequest

_PROJECT = re.compile(r"^\s*(\d+)(?:\.\d+)?\s*$")


def json_object() -> dict:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", field="body")
    return data


def project_id(body: dict, *, required: bool = False) -> int | None:
    """Label Studio sends `project` as "<id>.<created_at>" (or an int, or an object in webhooks)."""
    raw = body.get("project")
    if isinstance(raw, dict):
        raw = raw.get("id")
    if raw is None or raw == "":
        if required:
            raise BadRequest("`project` is required", field="project")
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _PROJECT.match(str(raw)) if isinstance(raw, str) else None
    if not match:
        raise BadRequest(f"`project` must look like '<id>.<timestamp>', got {raw!r}", field="project")
    return int(match.group(1))


def required_string(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"`{name}` must be a non-empty string", field=name)
    return value
