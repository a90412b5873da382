"""Label Studio events → ground truth → (debounced) refinement jobs. Runs inside /webhook, so it
only touches Redis: a few round trips, no model, no Label Studio API call."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from ..errors import BadRequest
from ..labeling.label_config import parse_label_config
from ..labelstudio.payloads import gold_from_annotation, id_list
from ..refinement.scheduler import RefinementScheduler
from ..store.ground_truth import GroundTruthStore

log = logging.getLogger(__name__)

ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
LEARNING_ACTIONS = ANNOTATION_EVENTS | {"ANNOTATIONS_DELETED", "START_TRAINING", "PROJECT_UPDATED"}


@dataclass
class EventOutcome:
    status: str  # accepted | ignored
    action: str
    project: int | None
    stored: int = 0
    removed: int = 0
    job: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class LearningEvents:
    def __init__(self, conn: redis.Redis, scheduler: RefinementScheduler):
        self.conn = conn
        self.scheduler = scheduler

    def handle(self, action: str, project: int | None, body: dict, *, notify: bool = True) -> EventOutcome:
        """`notify=False` stores only: a caller with many annotations (legacy /train) schedules once."""
        if action not in LEARNING_ACTIONS:
            return EventOutcome("ignored", action, project)
        if project is None:
            raise BadRequest(f"{action} needs `project`", field="project")
        store = GroundTruthStore(self.conn, project)
        config = (body.get("project") or {}).get("label_config") if isinstance(body.get("project"), dict) else None
        if isinstance(config, str) and config.strip():
            if store.set_label_config(config):
                log.info("project %s: label config changed, a new version lineage starts", project)
        outcome = EventOutcome("accepted", action, project)
        if action in ANNOTATION_EVENTS:
            annotation = body.get("annotation")
            if not isinstance(annotation, dict):
                raise BadRequest(f"{action} needs an `annotation` object", field="annotation")
            config = config or store.label_config()
            if not config:
                raise BadRequest(f"{action} needs `project.label_config`", field="project.label_config")
            gold = gold_from_annotation(parse_label_config(config), body.get("task"), annotation)
            if gold is None:  # cancelled, or no choice we predict: it must not stay as ground truth
                if isinstance(annotation.get("id"), int):
                    outcome.removed = store.delete_annotations([annotation["id"]])
            else:
                outcome.stored = int(store.upsert(gold))
        elif action == "ANNOTATIONS_DELETED":
            outcome.removed = store.delete_annotations(id_list(body, "annotations", action, bare_ints=True))
        changed = outcome.stored + outcome.removed
        if not notify:
            return outcome
        if action == "START_TRAINING":
            outcome.job = self.scheduler.notify(project, changes=0, force=True, reason="START_TRAINING")
        elif changed:
            outcome.job = self.scheduler.notify(project, changes=changed, reason=action)
        return outcome
