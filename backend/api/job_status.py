"""GET /jobs?project=ID: refinement runs (queued, scheduled, started, finished, failed) with timing,
and the pre-annotation jobs of imported tasks (`preannotation`)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from ..errors import BadRequest

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
def jobs():
    raw = request.args.get("project", "")
    if not raw.isdigit():
        raise BadRequest("query parameter `project` (a project id) is required", field="project")
    project = int(raw)
    return jsonify(
        project=project,
        jobs=current_app.extensions["llmlb.scheduler"].runs(project),
        preannotation=current_app.extensions["llmlb.import_preannotation"].runs(project),
    )
