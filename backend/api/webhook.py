"""/webhook and /train: validate, acknowledge at once (Label Studio waits at most 1 s for a webhook).

The learning behind these events is issue B; here they are checked and counted, never run inline.
"""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from ..errors import BadRequest
from .request import json_object, project_id

log = logging.getLogger(__name__)

bp = Blueprint("webhook", __name__)

LEARNING_ACTIONS = {
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "PROJECT_UPDATED",
}


@bp.post("/webhook")
def webhook():
    body = json_object()
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("`action` must be a non-empty string", field="action")
    project = project_id(body)
    if action not in LEARNING_ACTIONS:
        return jsonify(status="ignored", action=action)
    if project is None:
        raise BadRequest(f"{action} needs `project`", field="project")
    if action in {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"} and not isinstance(body.get("annotation"), dict):
        raise BadRequest(f"{action} needs an `annotation` object", field="annotation")
    if action == "ANNOTATIONS_DELETED" and not isinstance(body.get("annotations"), list):
        raise BadRequest("ANNOTATIONS_DELETED needs an `annotations` list", field="annotations")
    log.info("webhook %s for project %s accepted", action, project)
    return jsonify(status="accepted", action=action, project=project)


@bp.post("/train")
def train():
    body = json_object()
    project = project_id(body, required=True)
    annotations = body.get("annotations")
    if not isinstance(annotations, list):
        raise BadRequest("`annotations` must be a list of annotated tasks", field="annotations")
    log.info("/train for project %s with %d tasks accepted", project, len(annotations))
    return jsonify(status="accepted", project=project, tasks=len(annotations))
