"""GET /versions/<label>: what a stored version serves, in plain words (labeling/version_summary.py),
for a page or a script that wants more than /versions' metrics."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from ..errors import BadRequest, NotFound
from ..labeling.version_summary import summary
from ..store.versions import report_key
from .openapi import QUERY, ProjectQuery, VersionDetail, responses, spec
from .request import requested_projects

bp = Blueprint("version_detail", __name__)


def report_link(conn, project: int, label: str) -> str | None:
    """Where the report of a published version is served, if one was stored."""
    return f"/versions/{label}/report?project={project}" if conn.exists(report_key(project, label)) else None


@bp.get("/versions/<label>")
@spec.validate(query=ProjectQuery, resp=responses(VersionDetail, *QUERY, 404), skip_validation=True)
def version_detail(label: str):
    """A version's instructions, demonstrations, calibration, head, threshold and metrics
    (`?project=ID` when several projects have a version of that name)."""
    conn = current_app.extensions["llmlb.redis"]
    registry = current_app.extensions["llmlb.versions"]
    projects = requested_projects(request.args, conn)
    found = [(p, v) for p in projects for v in registry.find(p, label) if v.label == label and v.number]
    if not found:
        raise NotFound(f"no stored version {label[:200]!r}", field="label")
    if len(found) > 1:
        raise BadRequest(f"several projects have a version {label[:200]!r}: add ?project= one of "
                         f"{[p for p, _ in found]}", field="project")
    p, version = found[0]
    return jsonify(project=p, **summary(version), report=report_link(conn, p, label))
