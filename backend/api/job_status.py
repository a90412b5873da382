"""GET /jobs?project=ID: refinement runs (queued, scheduled, started, finished, failed) with timing,
and the pre-annotation jobs of imported tasks (`preannotation`)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from .openapi import QUERY, JobsResponse, RequiredProjectQuery, responses, spec
from .request import project_id

bp = Blueprint("jobs", __name__)


@bp.get("/jobs")
@spec.validate(query=RequiredProjectQuery, resp=responses(JobsResponse, *QUERY), skip_validation=True)
def jobs():
    """The project's refinement runs and pre-annotation jobs, newest first."""
    project = project_id(request.args, required=True)
    return jsonify(
        project=project,
        jobs=current_app.extensions["llmlb.scheduler"].runs(project),
        preannotation=current_app.extensions["llmlb.import_preannotation"].runs(project),
    )
