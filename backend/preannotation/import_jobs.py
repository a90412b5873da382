"""TASKS_CREATED → the new tasks are pre-annotated in the background (PREANNOTATE_ON_IMPORT=true),
so annotators open tasks that already carry a prediction.

The webhook only enqueues RQ jobs that carry the project id and task ids (JSON serializer) and
answers at once (Label Studio waits 1 s); the worker reads the tasks back from Label Studio,
predicts them with the project's current version and writes the predictions through the API.
Tasks that already carry the current version (e.g. the editor opened one first) are skipped.
"""
from __future__ import annotations

import logging

import redis
from rq import Queue, Retry

from ..errors import BadRequest, LabelConfigError, TooManyRequests
from ..labelstudio.payloads import MAX_IDS_PER_EVENT, id_list
from ..settings import Settings
from ..store.rate_limit import take
from ..store.redis import key
from ..worker import RUNS_KEPT, describe_runs

log = logging.getLogger(__name__)

JOB_FUNC = "backend.preannotation.import_jobs.preannotate_tasks"
TASKS_PER_JOB = 200  # a large import becomes several jobs, each retried on its own
SECONDS_PER_TASK = 10  # job timeout budget per task on a busy CPU (scoring + the API round trip)
# Imported tasks queued for pre-annotation per project and hour: one maximal event's worth
TASKS_PER_HOUR = MAX_IDS_PER_EVENT


def _runs_key(project: int) -> str:
    return key("project", project, "preannotate-runs")


class ImportPreannotation:
    """Turns TASKS_CREATED webhooks into pre-annotation jobs; lists them for GET /jobs."""

    def __init__(self, conn: redis.Redis, queue: Queue, settings: Settings):
        self.conn = conn
        self.queue = queue
        self.settings = settings

    def handle(self, project: int | None, body: dict) -> dict:
        if not self.settings.preannotate_on_import:
            return {"status": "ignored", "action": "TASKS_CREATED", "reason": "PREANNOTATE_ON_IMPORT is off"}
        if project is None:
            raise BadRequest("TASKS_CREATED needs `project`", field="project")
        ids = id_list(body, "tasks", "TASKS_CREATED")
        wait = take(self.conn, "preannotate", project, len(ids), TASKS_PER_HOUR, 3600) if ids else None
        if wait is not None:
            log.warning("project %s: TASKS_CREATED of %d tasks refused (429): over %d tasks queued for "
                        "pre-annotation this hour; run `preannotate --only-missing` for them", project, len(ids),
                        TASKS_PER_HOUR)
            raise TooManyRequests(f"project {project} has queued {TASKS_PER_HOUR} tasks for pre-annotation this hour; "
                                  f"run `preannotate --only-missing` for the rest", field="tasks", retry_after=wait)
        job_ids = []
        for start in range(0, len(ids), TASKS_PER_JOB):
            chunk = ids[start:start + TASKS_PER_JOB]
            job = self.queue.enqueue(
                JOB_FUNC, args=(project, chunk), meta={"reason": "TASKS_CREATED"},
                retry=Retry(max=2, interval=[10, 60]), job_timeout=120 + SECONDS_PER_TASK * len(chunk),
                result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
            )
            job_ids.append(job.id)
        if job_ids:
            pipe = self.conn.pipeline()
            pipe.lpush(_runs_key(project), *job_ids)
            pipe.ltrim(_runs_key(project), 0, RUNS_KEPT - 1)
            pipe.execute()
        log.info("project %s: %d new tasks, %d pre-annotation jobs queued", project, len(ids), len(job_ids))
        return {"status": "accepted", "action": "TASKS_CREATED", "project": project, "tasks": len(ids), "jobs": job_ids}

    def runs(self, project: int, limit: int = 20) -> list[dict]:
        return describe_runs(self.conn, _runs_key(project), limit)


def preannotate_tasks(project_id: int, task_ids: list[int]) -> dict:
    """RQ entry point: pre-annotate these tasks of a project (ids only, no app objects)."""
    from ..store.redis import connect
    from .batch import build_preannotator

    settings = Settings.from_env()
    project = int(project_id)
    try:
        report = build_preannotator(settings, connect(settings)).run(project, task_ids=[int(t) for t in task_ids])
    except LabelConfigError as exc:  # e.g. an NER project: nothing we can predict, no point retrying
        return {"status": "skipped", "project": project, "reason": exc.message}
    return {"status": "done", **report.to_dict()}
