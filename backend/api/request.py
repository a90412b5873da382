"""Small helpers that turn a Flask request into validated plain values (errors name the field)."""
from __future__ import annotations

import re

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..labeling.label_config import valid_unicode
from ..labelstudio.payloads import label_studio_id, short_repr
from ..store.redis import key

# ASCII digits only, and at most 20 of them before int() (the range check follows)
_PROJECT = re.compile(r"^\s*([0-9]{1,20})(?:\.[0-9]+)?\s*$", re.ASCII)


def json_object(*, max_bytes: int | None = None) -> dict:
    """The body as a JSON object, read only when it is declared as JSON (`application/json`, with
    or without a charset, or a `+json` type), which is what Label Studio sends: a text/plain, form
    or multipart body is one a browser posts cross-origin without a CORS preflight, so it is
    refused (415) before being read. `max_bytes` lowers the app's 64 MiB limit for one route (413)."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"the request body must be JSON sent as Content-Type: application/json, "
            f"got {request.mimetype[:100] or 'no Content-Type'}", field="Content-Type")
    if max_bytes is not None:
        request.max_content_length = max_bytes
    limit = request.max_content_length
    too_large = PayloadTooLarge(f"the request body is larger than {limit} bytes", field="body")
    try:
        raw = request.get_data()
    except RequestEntityTooLarge:
        raise too_large from None
    # a chunked body (no Content-Length) is cut at the limit instead: reaching it means too large
    if limit is not None and request.content_length is None and len(raw) >= limit:
        raise too_large
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the JSON parser recurses (silent= covers ValueError only)
        raise BadRequest("the request body is nested too deeply", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", field="body")
    return data


def project_id(body, *, required: bool = False) -> int | None:
    """Label Studio sends `project` as "<id>.<created_at>" (or an int, or an object in webhooks);
    `body` may also be `request.args` (a `?project=` query parameter).

    Only ASCII digits count ('١٢' and '²' are digits to Python, not to Label Studio), and the id
    must be a Label Studio id (1..MAX_ID), so thousands of digits or a bool never reach int()."""
    raw = body.get("project")
    field = "project"
    if isinstance(raw, dict):
        raw, field = raw.get("id"), "project.id"
    if raw is None or raw == "":
        if required:
            raise BadRequest("`project` is required", field="project")
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return label_studio_id(raw, field)
    match = _PROJECT.match(raw) if isinstance(raw, str) else None
    if not match:
        raise BadRequest(f"`{field}` must be a project id or '<id>.<timestamp>', got {short_repr(raw)}", field=field)
    return label_studio_id(int(match.group(1)), field)


def requested_projects(args, conn) -> list[int]:
    """`?project=ID` (an ASCII id, checked like a body's `project`), else every project that has
    a stored version."""
    project = project_id(args)
    if project is not None:
        return [project]
    return sorted(int(p) for p in conn.smembers(key("projects")))


def required_string(body: dict, name: str) -> str:
    """A non-empty string that is valid Unicode (a lone surrogate could not be encoded later)."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"`{name}` must be a non-empty string", field=name)
    return valid_unicode(value, name)
