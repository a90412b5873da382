"""Periodic reconciliation: every RECONCILE_INTERVAL the worker re-reads each known project's
annotations from the Label Studio API.

Label Studio sends each webhook once and never retries it, so an event that arrived while the
backend or Redis was down is lost to the webhook path; this pass recovers it within an interval
and queues a refinement job for a project whose ground truth changed. One run is scheduled at a
time: a Redis key holds the id of the scheduled run (set only if absent), and a run clears it and
schedules the next before doing its work, so a failed run does not stop the chain.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import redis
from rq import Queue

from ..labelstudio.reconcile import reconcile
from ..settings import Settings
from ..store.ground_truth import GroundTruthStore
from ..store.redis import key
from .scheduler import RefinementScheduler

log = logging.getLogger(__name__)

JOB_FUNC = "backend.refinement.reconciliation.reconcile_projects"
NEXT_KEY = key("reconcile", "next-job")


def periodic(settings: Settings) -> bool:
    return settings.label_studio_api and settings.reconcile_interval_s > 0


def schedule_reconciliation(conn: redis.Redis, queue: Queue, settings: Settings) -> str | None:
    """Schedule the next run unless one is already scheduled; returns its job id (None: off)."""
    if not periodic(settings):
        return None
    interval = settings.reconcile_interval_s
    # the key outlives the run it names by a margin, so a lost job (Redis flushed) is replaced later
    if not conn.set(NEXT_KEY, "pending", nx=True, ex=int(interval * 2 + 600)):
        return (conn.get(NEXT_KEY) or b"").decode() or None
    job = queue.enqueue_in(timedelta(seconds=interval), JOB_FUNC, result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
                           meta={"reason": "RECONCILE_INTERVAL"})
    conn.set(NEXT_KEY, job.id, xx=True, keepttl=True)
    return job.id


def reconcile_known_projects(conn: redis.Redis, settings: Settings, scheduler: RefinementScheduler) -> dict:
    """Reconcile every project this backend has seen; a changed one gets a refinement job."""
    out = {}
    for project in sorted(int(p) for p in conn.smembers(key("projects"))):
        result = reconcile(settings, GroundTruthStore(conn, project))
        if result.get("changed"):
            result["job"] = scheduler.notify(project, changes=result["changed"], reason="reconciliation")["id"]
            log.info("project %s: reconciliation changed %d ground-truth items", project, result["changed"])
        out[str(project)] = result
    return out


def reconcile_projects() -> dict:
    """RQ entry point (no arguments): schedule the next run, then reconcile every known project."""
    from ..store.redis import connect
    from ..worker import make_queue

    settings = Settings.from_env()
    conn = connect(settings)
    queue = make_queue(settings, conn)
    conn.delete(NEXT_KEY)
    schedule_reconciliation(conn, queue, settings)
    return reconcile_known_projects(conn, settings, RefinementScheduler(conn, queue, settings))
