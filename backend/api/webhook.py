"""/webhook and /train: validate, store ground truth (or queue pre-annotation of new tasks),
enqueue, answer in milliseconds.

Label Studio waits at most 1 s for a webhook and sends it without credentials; the refinement
itself runs on the RQ worker, never here.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from ..errors import BadRequest, PayloadTooLarge, Unauthorized
from .openapi import JSON_BODY, PUBLIC, EventAnswer, TrainRequest, TrainResponse, WebhookEvent, responses, spec
from .request import json_object, project_id
from .secret_path import SECRET_OK

log = logging.getLogger(__name__)

bp = Blueprint("webhook", __name__)


@bp.post("/webhook")
@spec.validate(json=WebhookEvent, resp=responses(EventAnswer, *JSON_BODY, 429, 503), security=PUBLIC,
               skip_validation=True)
def webhook():
    """Label Studio's event webhooks: annotations become ground truth, which starts refinement."""
    settings = current_app.extensions["llmlb.settings"]
    if settings.webhook_secret and not request.environ.get(SECRET_OK):
        raise Unauthorized("this backend takes webhooks only under its secret path (WEBHOOK_SECRET)", field="path")
    try:  # /webhook is public: its bodies are held to WEBHOOK_MAX_BYTES, not the app's 64 MiB
        body = json_object(max_bytes=settings.webhook_max_bytes)
    except PayloadTooLarge:
        log.warning("/webhook: refused a body over WEBHOOK_MAX_BYTES=%d (413); if it was the TASKS_CREATED of a "
                    "large import, raise WEBHOOK_MAX_BYTES or run `preannotate`", settings.webhook_max_bytes)
        raise
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("`action` must be a non-empty string", field="action")
    if action == "TASKS_CREATED":  # pre-annotation of new tasks (PREANNOTATE_ON_IMPORT), queued only
        return jsonify(current_app.extensions["llmlb.import_preannotation"].handle(project_id(body), body))
    outcome = current_app.extensions["llmlb.events"].handle(action, project_id(body), body)
    return jsonify(outcome.to_dict())


@bp.post("/train")
@spec.validate(json=TrainRequest, resp=responses(TrainResponse, *JSON_BODY, 503), skip_validation=True)
def train():
    """Legacy training call (Label Studio with the START_TRAINING flag off): annotated tasks inline,
    all validated before any is stored."""
    body = json_object()
    project = project_id(body, required=True)
    annotations = body.get("annotations")
    if not isinstance(annotations, list):
        raise BadRequest("`annotations` must be a list of annotated tasks", field="annotations")
    stored = current_app.extensions["llmlb.events"].store_tasks(project, body.get("label_config"), annotations)
    job = current_app.extensions["llmlb.scheduler"].notify(project, changes=stored, force=True, reason="/train")
    return jsonify(status="accepted", project=project, tasks=len(annotations), stored=stored, job=job["id"])
