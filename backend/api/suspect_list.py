"""GET /projects/<id>/suspects: the human labels most likely wrong, from the last refinement job.

Rows a reviewer has fixed since are left out at once; the next job re-ranks everything with the fix.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from ..errors import BadRequest
from ..store.ground_truth import GroundTruthStore
from ..store.suspects import MAX_SUSPECTS, SuspectStore, UnknownControl, narrowed
from .openapi import QUERY, SuspectsQuery, SuspectsResponse, responses, spec
from .request import project_id

bp = Blueprint("suspects", __name__)

DEFAULT_LIMIT = 50


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_SUSPECTS):
        raise BadRequest(f"`limit` must be a whole number from 1 to {MAX_SUSPECTS}, got {raw[:40]!r}", field="limit")
    return int(raw)


@bp.get("/projects/<project>/suspects")
@spec.validate(query=SuspectsQuery, resp=responses(SuspectsResponse, *QUERY), skip_validation=True)
def suspects(project: str):
    """The project's label-error ranking per control, most likely wrong first: each row the task
    and annotation, the labels given and the ones the model suggests, with their probabilities."""
    number = project_id({"project": project}, required=True)
    limit = _limit(request.args.get("limit"))
    wanted = request.args.get("control")
    conn = current_app.extensions["llmlb.redis"]
    ranking = SuspectStore(conn, number).open_rows(GroundTruthStore(conn, number))
    try:
        controls = narrowed(ranking, wanted, limit)
    except UnknownControl as exc:
        raise BadRequest(str(exc), field="control") from None
    return jsonify(project=number, model_version=ranking.get("model_version"),
                   computed_at=ranking.get("computed_at"), gt_count=ranking.get("gt_count", 0), controls=controls)
