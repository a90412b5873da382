"""Job series the RQ worker records: outcomes, durations, versions published.

Recorded in the worker process itself, after each job, from what the job left in Redis (its
status and returned `status`), not inside the job: the job runs in a forked "horse" that may be
killed, and a new pid per job would leave one metrics file per job in PROMETHEUS_MULTIPROC_DIR.
With that directory shared with gunicorn (`serve` does it), the web's /metrics shows these.
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
KINDS = {"refine_project": "refinement", "preannotate_tasks": "preannotation",
         "reconcile_projects": "reconciliation"}  # by the RQ entry point's name
PUBLISHING = {"published", "refreshed", "repaired"}  # a refinement's returned statuses that published a version
RETRYING = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED}  # failed, to be run again


def kind_of(job: Job) -> str:
    name = (job.func_name or "").rsplit(".", 1)[-1]
    return KINDS.get(name, name or "unknown")


def outcome(job: Job) -> str:
    """What an attempt came to: the `status` a job returned (refinement: published, refreshed,
    repaired, kept, unchanged, skipped, deferred), `failed`, or `retried` (failed, scheduled again)."""
    status = job.get_status(refresh=True)
    if status == JobStatus.FINISHED:
        result = job.return_value(refresh=True)
        return str(result.get("status") or "finished") if isinstance(result, dict) else "finished"
    if status in RETRYING:
        return "retried"
    return getattr(status, "value", None) or str(status or "unknown")


class JobMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.jobs = Counter("llmlb_jobs", "RQ job attempts by kind and outcome.", ["kind", "status"], registry=registry)
        self.duration = Histogram("llmlb_job_duration_seconds", "Wall time of a job attempt in the worker.",
                                  ["kind", "status"], buckets=JOB_BUCKETS, registry=registry)
        self.versions = Counter("llmlb_versions_published", "Model versions published by refinement jobs.",
                                ["status"], registry=registry)
        for status in sorted(PUBLISHING):  # shown at 0 from the start: a dashboard's series exists
            self.versions.labels(status)

    def observe(self, kind: str, status: str, seconds: float) -> None:
        self.jobs.labels(kind, status).inc()
        self.duration.labels(kind, status).observe(seconds)
        if kind == "refinement" and status in PUBLISHING:
            self.versions.labels(status).inc()

    def record(self, job: Job, seconds: float) -> None:
        """After an attempt; never raises: a job whose outcome cannot be read (Redis down, the job
        already deleted) counts as `unknown` rather than stopping the worker."""
        try:
            status = outcome(job)
        except Exception as exc:  # noqa: BLE001 - RedisError, InvalidJobOperation, a result not JSON...
            log.warning("job %s: its outcome could not be read for /metrics: %s", job.id, exc)
            status = "unknown"
        self.observe(kind_of(job), status, seconds)
