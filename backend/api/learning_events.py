"""Label Studio events → ground truth → (debounced) refinement jobs. Runs inside /webhook, so it
only touches Redis: a few round trips, no model, no Label Studio API call."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from ..errors import BadRequest, LabelConfigError
from ..labeling.label_config import LabelTask, config_hash, parse_label_config
from ..labelstudio.payloads import annotation_id, gold_from_annotation, id_list
from ..labeling.templates import selectable
from ..refinement.scheduler import RefinementScheduler
from ..refinement.selection.template_choice import CHOICE_SIZES, learnt_from_labels
from ..store.ground_truth import GoldItem, GroundTruthStore
from ..store.instruction_effects import InstructedAnswers
from ..store.unlabelled import UnlabelledTexts

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


def _valid_config(config: object, field: str) -> str | None:
    """A label config a body carries, checked before anything is stored (None when it has none).

    An event with a config we cannot parse is refused whole: storing it would make every later
    event and refinement job of the project fail on it."""
    if config is None:
        return None
    if not isinstance(config, str):
        raise LabelConfigError(f"`{field}` must be a string, got {type(config).__name__}", field=field)
    if not config.strip():
        return None
    _parsed(config, field)
    return config


def _label_task(config: str | None, store: GroundTruthStore, action: str, field: str) -> LabelTask:
    """The config the body carries, else the project's stored one (parsed)."""
    config = config or store.label_config()
    if not config:
        raise BadRequest(f"{action} needs `{field}`", field=field)
    return _parsed(config, field)


def _parsed(config: str, field: str) -> LabelTask:
    """parse_label_config, its error naming where the config sits in the body."""
    try:
        return parse_label_config(config)
    except LabelConfigError as exc:
        raise LabelConfigError(exc.message, field=field) from exc


def _store_config(store: GroundTruthStore, config: str, project: int) -> None:
    """Store a (validated) config. Only an edit of what it serves starts a new version lineage
    (config_hash); a cosmetic one (a header, a style, whitespace) keeps the project's versions."""
    previous = store.set_label_config(config)
    if previous is None or previous == config:
        return
    try:
        changed = config_hash(previous) != config_hash(config)
    except LabelConfigError:  # a stored config this parser no longer accepts served no lineage
        changed = True
    if changed:
        log.info("project %s: label config changed, a new version lineage starts", project)


class LearningEvents:
    def __init__(self, conn: redis.Redis, scheduler: RefinementScheduler):
        self.conn = conn
        self.scheduler = scheduler

    def handle(self, action: str, project: int | None, body: dict) -> EventOutcome:
        """One event: the whole body is validated first, then stored, so a rejected event (4xx)
        leaves the project's config and ground truth as they were."""
        if action not in LEARNING_ACTIONS:
            return EventOutcome("ignored", action, project)
        if project is None:
            raise BadRequest(f"{action} needs `project`", field="project")
        store = GroundTruthStore(self.conn, project)
        project_body = body.get("project")
        config = _valid_config(project_body.get("label_config") if isinstance(project_body, dict) else None,
                               "project.label_config")
        outcome = EventOutcome("accepted", action, project)
        gold, delete_ids = None, []
        if action in ANNOTATION_EVENTS:
            annotation = body.get("annotation")
            if not isinstance(annotation, dict):
                raise BadRequest(f"{action} needs an `annotation` object", field="annotation")
            label_task = _label_task(config, store, action, "project.label_config")
            gold = gold_from_annotation(label_task, body.get("task"), annotation)
            if gold is None:  # cancelled, or no choice we predict: it must not stay as ground truth
                delete_ids = [annotation_id(annotation)]
        elif action == "ANNOTATIONS_DELETED":
            delete_ids = id_list(body, "annotations", action, bare_ints=True)

        if config is not None:
            _store_config(store, config, project)
        if gold is not None:
            outcome.stored = int(store.upsert(self._with_effect(store, gold)))
        elif delete_ids:
            outcome.removed = store.delete_annotations(delete_ids)
        changed = outcome.stored + outcome.removed
        if action == "START_TRAINING":
            outcome.job = self.scheduler.notify(project, changes=0, force=True, reason="START_TRAINING")
        elif changed:
            outcome.job = self.scheduler.notify(project, changes=changed, reason=action)
        return outcome

    def _with_effect(self, store: GroundTruthStore, gold: GoldItem) -> GoldItem:
        """The gold item with its instruction's effect: what the editor answered under the typed
        instruction on this task (remembered by /predict), else what the stored item of the task
        recorded for the same instruction and text, each judged against the labels now chosen.
        The effect is a hint for refinement, so a Redis failure reading it stores the item without."""
        if not gold.instruction:
            return gold
        try:
            answers = InstructedAnswers(self.conn).recall(store.project, gold.task_id, gold.instruction, sorted(gold.labels))
            return gold.with_instructed_answers(answers).carried_from(store.by_task([gold.task_id]).get(gold.task_id))
        except redis.RedisError as exc:
            log.warning("project %s task %s: the instruction's effect was not read (%s)", store.project, gold.task_id, exc)
            return gold

    def store_tasks(self, project: int, label_config: object, tasks: list) -> int:
        """Legacy /train: the annotations of annotated tasks → ground truth; how many were stored.

        Every annotation is read before the first is stored, so one bad element (named by its path,
        e.g. `annotations[3].annotations[0].result[1].value`) rejects the call and stores nothing.
        The caller schedules one job for the lot."""
        store = GroundTruthStore(self.conn, project)
        config = _valid_config(label_config, "label_config")
        label_task = None  # needed (and required) only once there is an annotation to read
        golds: list[GoldItem] = []
        delete_ids: list[int] = []
        for i, task in enumerate(tasks):
            at = f"annotations[{i}]"
            if not isinstance(task, dict):
                raise BadRequest(f"{at} must be a task object", field=at)
            annotations = task.get("annotations")
            if annotations is None:
                continue
            if not isinstance(annotations, list):
                raise BadRequest(f"`{at}.annotations` must be a list of annotation objects", field=f"{at}.annotations")
            for j, annotation in enumerate(annotations):
                where = f"{at}.annotations[{j}]"
                label_task = label_task or _label_task(config, store, "/train", "label_config")
                gold = gold_from_annotation(label_task, task, annotation, task_at=at, annotation_at=where)
                if gold is None:
                    delete_ids.append(annotation_id(annotation, where))
                else:
                    golds.append(gold)

        if config is not None:
            _store_config(store, config, project)
        stored = sum(int(store.upsert(self._with_effect(store, gold))) for gold in golds)
        store.delete_annotations(delete_ids)
        return stored

    def tasks_seen(self, project: int, label_config: str, label_task: LabelTask, texts: dict[str, list[str]],
                   version) -> dict | None:
        """/predict's tasks → the project's sample of unlabelled texts (per data field). When a
        sample reaches the size of a template choice and the project serves no version learnt
        from labels yet, a (debounced) job is scheduled to choose version 0's template; the
        project's config is stored if no event has brought it yet."""
        if not self.scheduler.settings.template_choice or learnt_from_labels(version):
            return None
        unlabelled = UnlabelledTexts(self.conn, project)
        fields = {c.field for c in label_task.controls if selectable(c)}
        grown = []
        for field in sorted(fields):
            before, after = unlabelled.add(field, texts.get(field, []))
            grown += [size for size in CHOICE_SIZES if before < size <= after]
        if not grown:
            return None
        store = GroundTruthStore(self.conn, project)
        if not store.label_config():
            _store_config(store, label_config, project)
        return self.scheduler.notify(project, changes=0, reason=f"{max(grown)} unlabelled texts seen")
