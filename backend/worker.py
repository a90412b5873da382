"""The RQ worker process and its jobs as /jobs shows them.

Jobs carry project ids only and use the JSON serializer (never pickle).
"""
from __future__ import annotations

import time

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from .job_metrics import JobMetrics
from .settings import Settings
from .store.redis import connect

RUNS_KEPT = 50  # job ids kept per project and kind of job, for /jobs


def make_queue(settings: Settings, connection) -> Queue:
    return Queue(settings.rq_queue_name, connection=connection, serializer=JSONSerializer)


MAINTENANCE_S = 60


def make_worker(settings: Settings, connection) -> MeteredWorker:
    """Maintenance every minute (RQ's default is 10), and an idle worker wakes often enough to run
    it: RQ blocks on an empty queue for its worker TTL less 15 s (405 s by default) and maintains
    only between waits. Maintenance is what retries a job whose worker died once its heartbeat
    has expired, and what takes over a dead worker's scheduler, without which no debounced or
    retried job is enqueued."""
    return MeteredWorker([make_queue(settings, connection)], connection=connection, serializer=JSONSerializer,
                         maintenance_interval=MAINTENANCE_S, worker_ttl=MAINTENANCE_S - 15)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Work the queue; the scheduler runs too, because debounced and retried jobs are scheduled."""
    return make_worker(settings, connect(settings)).work(burst=burst, with_scheduler=True)


class MeteredWorker(Worker):
    """RQ's forking Worker that records each job's outcome and duration (JobMetrics) itself, once
    the job's horse has exited: in one process, whether the job returned, raised or was killed."""

    def __init__(self, *args, job_metrics: JobMetrics | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_metrics = job_metrics or JobMetrics()

    def execute_job(self, job: Job, queue: Queue):
        t0 = time.monotonic()
        try:
            return super().execute_job(job, queue)
        finally:
            self.job_metrics.record(job, time.monotonic() - t0)


def describe(job: Job) -> dict:
    def iso(dt):
        return dt.isoformat() if dt else None

    info = {
        "id": job.id,
        "project": (job.args or [None])[0],
        "status": getattr(job.get_status(refresh=True), "value", None) or "unknown",
        "reason": (job.meta or {}).get("reason"),
        **({"replaced_by": job.meta["replaced_by"]} if (job.meta or {}).get("replaced_by") else {}),
        "enqueued_at": iso(job.enqueued_at) or iso(job.created_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
    }
    if job.started_at and job.ended_at:
        info["seconds"] = round((job.ended_at - job.started_at).total_seconds(), 2)
    result = job.return_value(refresh=True) if info["status"] == JobStatus.FINISHED else None
    if result is not None:
        info["result"] = result
    if info["status"] == JobStatus.FAILED:
        latest = job.latest_result()
        info["error"] = (latest.exc_string or "").strip().splitlines()[-1:] if latest else None
    return info


def fetch_job(conn: redis.Redis, job_id: bytes | str | None) -> Job | None:
    """The RQ job with this id, or None when it expired or never existed."""
    if not job_id:
        return None
    try:
        return Job.fetch(job_id.decode() if isinstance(job_id, bytes) else job_id,
                         connection=conn, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def describe_runs(conn: redis.Redis, runs_key: str, limit: int = 20) -> list[dict]:
    """The newest jobs whose ids were pushed onto `runs_key`, described (expired ones left out)."""
    ids = conn.lrange(runs_key, 0, limit - 1)
    return [describe(job) for job in (fetch_job(conn, i) for i in ids) if job is not None]
