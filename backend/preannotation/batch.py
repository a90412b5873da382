"""Batch pre-annotation through Label Studio's API (`python -m backend preannotate`, and the
TASKS_CREATED job): tasks that lack a prediction of the project's current model version get one,
written back with `predictions.create` (our `model_version`, `score`, per-label probabilities).

Why not only Label Studio's "Retrieve predictions": it sends every selected task in one /predict
call with a fixed 100 s timeout and reports "Retrieved N predictions" even when the backend
failed. Here tasks go in batches, each batch is written as soon as it is predicted (an
interruption loses at most one batch, and a rerun skips every task that already carries the
current version), and each failure is counted with its task id.

`estimate` is the dry run: the plan's counts, and the time (and, with a price table, the cost) of
executing it, measured by predicting a few of its own tasks without writing them.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import redis

from ..engines.factory import engine_id, shared_engine
from ..errors import BackendError
from ..labeling.label_config import LabelTask, parse_label_config
from ..labeling.model_version import ModelVersion
from ..labeling.service import LabelingService, extract_texts
from ..labeling.tuned_body import body_loader
from ..labelstudio.client import as_dict, label_studio_client
from ..labelstudio.review_tab import SUSPECTS_VERSION
from ..settings import Settings
from ..store.predicted_logits import PredictedLogits
from ..store.tuned_bodies import TunedBodies
from ..store.versions import VersionRegistry

log = logging.getLogger(__name__)

IDS_PER_QUERY = 200  # task ids per Data Manager query (they travel in the URL)


class LabelStudioApiError(BackendError):
    """Label Studio's API refused or did not answer; nothing after that call was written."""

    status = 502
    code = "label_studio_api_error"


def _api(what: str, call: Callable, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # httpx transport errors and the SDK's ApiError alike
        raise LabelStudioApiError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _predictions(task: dict) -> list[dict]:
    """A listed task's predictions (full objects with `fields=all`; bare ids are skipped), but
    the label-suspect ones: they question an annotation, they do not predict the task."""
    listed = [as_dict(p) for p in task.get("predictions") or [] if not isinstance(p, int)]
    return [p for p in listed if p.get("model_version") != SUSPECTS_VERSION]


def carries(task: dict, version: str) -> bool:
    """Whether the task already has a prediction of this model version (so it is done)."""
    return any(p.get("model_version") == version for p in _predictions(task))


@dataclass(frozen=True)
class Selection:
    """Which tasks lacking a prediction of the current version are predicted.

    Default: all of them. `only_missing`: only tasks with no prediction at all (new tasks).
    `below_score`: only tasks whose latest prediction scored below it (or that have none), so a
    new version re-predicts just the uncertain part of a project."""

    only_missing: bool = False
    below_score: float | None = None

    def wants(self, task: dict, version: str) -> bool:
        predictions = _predictions(task)
        if carries(task, version):
            return False
        if not predictions:
            return True
        if self.only_missing:
            return False
        if self.below_score is None:
            return True
        latest = max(predictions, key=lambda p: p.get("id") or 0)
        score = latest.get("score")
        return score is None or score < self.below_score


@dataclass
class PreannotateReport:
    project: int
    model_version: str
    tasks: int = 0  # tasks looked at
    up_to_date: int = 0  # already carrying a prediction of model_version
    not_selected: int = 0  # left out by --only-missing / --below-score
    predicted: int = 0
    failed: list[dict] = field(default_factory=list)  # {"task": id, "error": message}
    project_model_version: str | None = None  # what project.model_version was set to, if it was

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Estimate:
    """What executing a plan would do and take (`preannotate --dry-run`); nothing was written.

    The time is measured on `sampled` of the tasks to predict: the first alone (it also pays the
    prompt prefix and calibration, once per run), the others together, then extrapolated; loading
    the model is not included. With a remote model the tokens per task are measured too, and with a
    price table (LLM_PRICE_PER_1K_PROMPT / _COMPLETION) they give the cost."""

    project: int
    model_version: str
    tasks: int  # tasks looked at
    up_to_date: int
    not_selected: int
    to_predict: int
    batches: int
    sampled: int = 0
    sample_seconds: float = 0.0
    seconds_per_task: float | None = None
    estimated_seconds: float | None = None
    tokens_per_task: dict | None = None  # {"prompt": …, "completion": …} with a remote model
    estimated_cost: float | None = None  # with a price table, in its currency
    unreadable: list[dict] = field(default_factory=list)  # sampled tasks lacking the field the config reads
    dry_run: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    project: int
    label_task: LabelTask
    version: ModelVersion
    todo: list[dict]
    report: PreannotateReport


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Preannotator:
    """Reads tasks from Label Studio, predicts them with the project's current version, writes
    the predictions back. The client is a label_studio_sdk.LabelStudio (or anything shaped so).

    `service` may be a function that makes it: it is then called when a task is first predicted,
    so that planning (Label Studio only) does not wait for the model to load."""

    def __init__(self, client, service: LabelingService | Callable[[], LabelingService], registry: VersionRegistry,
                 settings: Settings):
        self.client = client
        self._service = service
        self.registry = registry
        self.settings = settings

    @property
    def service(self) -> LabelingService:
        if not hasattr(self._service, "predict"):  # a function that makes it
            self._service = self._service()
        return self._service

    def _tasks(self, project: int, task_ids: Iterable[int] | None) -> Iterator[dict]:
        """Tasks with their predictions. The list endpoint is used, never GET /api/tasks/{id}:
        that one makes Label Studio call /predict itself for a task without predictions."""
        if task_ids is None:
            pages = [None]
        else:
            pages = [json.dumps({"selectedItems": {"all": False, "included": chunk}})
                     for chunk in _chunks(sorted(set(task_ids)), IDS_PER_QUERY)]
        for query in pages:
            extra = {"query": query} if query else {}
            tasks = _api(f"listing tasks of project {project}", self._list, project, extra)
            for task in tasks:
                yield as_dict(task)

    def _list(self, project: int, extra: dict) -> list:
        return list(self.client.tasks.list(project=project, fields="all", page_size=100, **extra))

    def plan(self, project: int, *, task_ids: Iterable[int] | None = None,
             selection: Selection = Selection()) -> Plan:
        """Which tasks will be predicted, with which version (nothing is written yet)."""
        ls_project = as_dict(_api(f"reading project {project}", self.client.projects.get, id=project))
        label_task = parse_label_config(ls_project.get("label_config") or "")
        version = self.registry.current(project, label_task.config_hash, label_task.legacy_hash)
        report = PreannotateReport(project=project, model_version=version.label)
        todo = []
        for task in self._tasks(project, task_ids):
            report.tasks += 1
            if carries(task, version.label):
                report.up_to_date += 1
            elif selection.wants(task, version.label):
                todo.append(task)
            else:
                report.not_selected += 1
        return Plan(project, label_task, version, todo, report)

    def estimate(self, plan: Plan, *, sample: int = 5) -> Estimate:
        """The plan's counts and, from predicting up to `sample` of its tasks (written nowhere), the
        time and cost of executing it."""
        report = plan.report
        out = Estimate(project=plan.project, model_version=plan.version.label, tasks=report.tasks,
                       up_to_date=report.up_to_date, not_selected=report.not_selected, to_predict=len(plan.todo),
                       batches=math.ceil(len(plan.todo) / self.settings.preannotate_batch))
        items = []
        for task in plan.todo[:sample]:
            try:
                items += extract_texts([task], plan.label_task, self.settings.max_text_chars)
            except BackendError as exc:
                out.unreadable.append({"task": task.get("id"), "error": exc.message.replace("tasks[0].", "")})
        if not items:
            return out
        meter = getattr(self.service.engine, "usage", None)
        start = meter.total() if meter is not None else None
        t0 = time.perf_counter()
        self.service.predict(items[:1], plan.label_task, plan.version)
        first = time.perf_counter() - t0
        after_first = meter.total() if meter is not None else None
        if len(items) > 1:
            self.service.predict(items[1:], plan.label_task, plan.version)
        total = time.perf_counter() - t0
        rest = len(plan.todo) - 1
        # the first task pays the run's one-offs (calibration); the others give the rate of the rest
        per_task = (total - first) / (len(items) - 1) if len(items) > 1 else first
        out.sampled, out.sample_seconds = len(items), round(total, 3)
        out.seconds_per_task = round(per_task, 4)
        out.estimated_seconds = round(first + per_task * rest, 3)
        if meter is not None:
            once = after_first.minus(start)
            each = meter.total().minus(after_first) if len(items) > 1 else once
            n = max(len(items) - 1, 1)
            out.tokens_per_task = {"prompt": round(each.prompt_tokens / n, 1),
                                   "completion": round(each.completion_tokens / n, 2)}
            if meter.prices.known:
                out.estimated_cost = round(meter.prices.cost(once) + meter.prices.cost(each) / n * rest, 6)
        return out

    def execute(self, plan: Plan, *, progress: Callable[[int], object] | None = None,
                set_project_version: bool = False) -> PreannotateReport:
        """Predict `plan.todo` batch by batch, writing each batch before the next is scored."""
        report = plan.report
        for batch in _chunks(plan.todo, self.settings.preannotate_batch):
            self._predict_batch(plan, batch, report)
            if progress is not None:
                progress(len(batch))
        if set_project_version and (report.predicted or report.up_to_date):
            # Label Studio averages `predictions_score` (the Data Manager's sort and filter) over the
            # predictions whose model_version equals project.model_version only.
            _api("setting project.model_version", self.client.projects.update,
                 id=plan.project, model_version=plan.version.label)
            report.project_model_version = plan.version.label
        log.info("project %s pre-annotation with %s: %d predicted, %d failed, %d up to date, %d not selected",
                 plan.project, plan.version.label, report.predicted, len(report.failed), report.up_to_date,
                 report.not_selected)
        return report

    def _predict_batch(self, plan: Plan, batch: list[dict], report: PreannotateReport) -> None:
        ready, items = [], []
        for task in batch:
            try:
                items += extract_texts([task], plan.label_task, self.settings.max_text_chars)
                ready.append(task)
            except BackendError as exc:  # this task's data lacks the field the config reads
                report.failed.append({"task": task.get("id"), "error": exc.message.replace("tasks[0].", "")})
        if not items:
            return
        try:
            predictions = self.service.predict(items, plan.label_task, plan.version, keep=self._keep(plan))
        except BackendError as exc:  # the engine failed on this batch; the next may still work
            report.failed += [{"task": t.get("id"), "error": exc.message} for t in ready]
            return
        for task, prediction in zip(ready, predictions):
            _api(f"writing the prediction of task {task['id']}", self.client.predictions.create,
                 task=task["id"], result=prediction["result"], score=prediction["score"],
                 model_version=prediction["model_version"])
            report.predicted += 1

    def _keep(self, plan: Plan) -> PredictedLogits | None:
        """Where the version's logits go for the project's next job: a pre-annotated task is not
        predicted again when an annotator opens it."""
        conn = self.registry.conn
        return None if conn is None else PredictedLogits(conn, plan.project, plan.version.label, self.registry.engine_id)

    def run(self, project: int, *, task_ids: Iterable[int] | None = None, selection: Selection = Selection(),
            set_project_version: bool = False) -> PreannotateReport:
        return self.execute(self.plan(project, task_ids=task_ids, selection=selection),
                            set_project_version=set_project_version)


def build_preannotator(settings: Settings, conn: redis.Redis, client=None) -> Preannotator:
    """A Preannotator over this process's engine and the versions stored in `conn`."""
    return Preannotator(
        client or label_studio_client(settings),
        lambda: LabelingService(shared_engine(settings), calibration=settings.calibration,
                                bodies=body_loader(TunedBodies(conn).load)),
        VersionRegistry(conn, engine_id(settings), settings.model_dir, ModelVersion),
        settings,
    )
