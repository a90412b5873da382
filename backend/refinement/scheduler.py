"""Refinement jobs on RQ: debounced per project, one running per project, retried, visible.

A job carries only the project id (JSON serializer); the worker rebuilds everything else from
Settings. Debounce: after REFINE_MIN_NEW ground-truth changes a job starts once the events pause
for REFINE_SETTLE seconds (a burst, an import or a script, becomes one job on all of it, not one
on its first changes and another on the rest), but no later than REFINE_DELAY after the
threshold; otherwise a job is scheduled REFINE_DELAY seconds after the first change.
START_TRAINING queues one at once. Further events while one is waiting join it. A Redis lock keeps a second job of the same project from
running while one runs (with several workers); that job reschedules itself.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import redis
from redis.exceptions import LockNotOwnedError
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ..errors import StoreUnavailable
from ..settings import Settings
from ..store.rate_limit import take
from ..store.redis import key
from ..worker import RUNS_KEPT, describe, describe_runs, fetch_job

log = logging.getLogger(__name__)

JOB_FUNC = "backend.refinement.scheduler.refine_project"
FORCED_PER_HOUR = 6  # START_TRAINING and /train jobs per project; more are debounced like any change
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _keys(project: int) -> dict[str, str]:
    return {
        "pending": key("project", project, "pending"),
        "next": key("project", project, "next-job"),
        "runs": key("project", project, "runs"),
        "sched": key("project", project, "sched-lock"),
        "running": key("project", project, "refine-lock"),
    }


class RefinementScheduler:
    def __init__(self, conn: redis.Redis, queue: Queue, settings: Settings):
        self.conn = conn
        self.queue = queue
        self.settings = settings

    def notify(self, project: int, *, changes: int, force: bool = False, reason: str = "") -> dict:
        """Record `changes` new ground-truth changes and make sure a job is queued or scheduled."""
        k = _keys(project)
        pending = self.conn.incrby(k["pending"], changes) if changes else int(self.conn.get(k["pending"]) or 0)
        now = force or pending >= self.settings.refine_min_new
        with _scheduling_lock(self.conn, k["sched"], project):
            waiting = fetch_job(self.conn, self.conn.get(k["next"]))
            promoted = None
            since = time.time()  # when the threshold was reached: a settling job waits no longer than REFINE_DELAY
            if waiting is not None and waiting.get_status(refresh=True) in WAITING:
                if not (now and waiting.get_status() == JobStatus.SCHEDULED):
                    return {**describe(waiting), "pending": pending}
                if "settling_since" in (waiting.meta or {}):
                    since = float(waiting.meta["settling_since"])
                    if not force and time.time() - since >= self.settings.refine_delay_s:
                        return {**describe(waiting), "pending": pending}  # a steady stream: it runs as scheduled
            if now and pending < self.settings.refine_min_new and not self._forced_job_allowed(project):
                now, reason = False, f"{reason} (over {FORCED_PER_HOUR} forced jobs this hour: debounced)"
                if waiting is not None and waiting.get_status() in WAITING:
                    return {**describe(waiting), "pending": pending}
            if now and waiting is not None and waiting.get_status() in WAITING:
                waiting.cancel()  # promote a delayed job, or push a settling one back: a new one replaces it
                promoted = waiting
            settle = now and not force and self.settings.refine_settle_s > 0
            options = dict(
                args=(project,),
                retry=Retry(max=3, interval=[10, 60, 300]),  # a worker killed, Label Studio away for minutes
                job_timeout=job_timeout(self.settings),
                result_ttl=7 * 24 * 3600,
                failure_ttl=7 * 24 * 3600,
                meta={"reason": reason or ("threshold" if now else "debounce"),
                      **({"settling_since": since} if settle else {})},
            )
            if now and not settle:
                job = self.queue.enqueue(JOB_FUNC, **options)
            else:
                wait = self.settings.refine_settle_s if settle else self.settings.refine_delay_s
                job = self.queue.enqueue_in(timedelta(seconds=wait), JOB_FUNC, **options)
            if promoted is not None:  # /jobs shows it canceled: say why
                promoted.meta["replaced_by"] = job.id
                promoted.save_meta()
            pipe = self.conn.pipeline()
            pipe.set(k["next"], job.id)
            pipe.lpush(k["runs"], job.id)
            pipe.ltrim(k["runs"], 0, RUNS_KEPT - 1)
            pipe.execute()
        info = describe(job)
        log.info("project %s: refinement job %s %s (%d pending)", project, job.id, info["status"], pending)
        return {**info, "pending": pending}

    def runs(self, project: int, limit: int = 20) -> list[dict]:
        return describe_runs(self.conn, _keys(project)["runs"], limit)

    def _forced_job_allowed(self, project: int) -> bool:
        """A forced job (START_TRAINING, /train) costs up to REFINE_MAX_SECONDS of CPU each: a loop of
        them is held to FORCED_PER_HOUR per project, beyond which they wait like any change."""
        if take(self.conn, "forced-jobs", project, 1, FORCED_PER_HOUR, 3600) is None:
            return True
        log.warning("project %s: over %d forced refinements this hour; this one is debounced", project, FORCED_PER_HOUR)
        return False


def refine_project(project_id: int) -> dict:
    """RQ entry point: refine one project's model from its ground truth (ids only, no app objects)."""
    from ..store.redis import connect
    from ..worker import make_queue
    from .job import run_refinement

    settings = Settings.from_env()
    conn = connect(settings)
    project = int(project_id)
    k = _keys(project)
    job = get_current_job()
    job_id = job.id if job is not None else f"inline-{uuid.uuid4().hex}"
    if job is not None and (conn.get(k["next"]) or b"").decode() == job.id:
        conn.delete(k["next"])  # events from now on queue a new job
    ttl = lock_ttl(settings)
    if not _acquire_project_lock(conn, k["running"], job_id, ttl):
        RefinementScheduler(conn, make_queue(settings, conn), settings).notify(project, changes=0, reason="busy")
        return {"status": "deferred", "reason": "another refinement of this project is running"}
    renewal = LockRenewal(conn, k["running"], job_id, ttl)
    consumed = 0
    try:
        consumed = int(conn.getset(k["pending"], 0) or 0)
        result = run_refinement(settings, conn, project)
        result["changes_consumed"] = consumed
        return result
    except Exception:
        conn.incrby(k["pending"], consumed)  # still to learn from: the retry or the next event counts them
        raise
    finally:
        renewal.stop()
        conn.eval(_RELEASE, 1, k["running"], job_id)


@contextmanager
def _scheduling_lock(conn: redis.Redis, lock_key: str, project: int):
    """The project's scheduling lock, held for the few round trips of one notify. Every webhook of a
    project passes here, so it is polled every 5 ms (not redis-py's 100 ms). A holder that died with
    Redis (a restart with AOF keeps the key until it expires) must not turn the next events into 500s:
    a lock not acquired in time is a 503 (the event's ground truth is already stored and counted; the
    next event schedules its job), and one that expired or vanished before release is only logged."""
    lock = conn.lock(lock_key, timeout=10, blocking_timeout=5, sleep=0.005)
    if not lock.acquire():
        raise StoreUnavailable(f"project {project}: the refinement scheduling lock stayed held; retry shortly")
    try:
        yield
    finally:
        try:
            lock.release()
        except LockNotOwnedError:
            log.warning("project %s: the scheduling lock expired or vanished before release", project)


def job_timeout(settings: Settings) -> int:
    """RQ's hard limit for one refinement job: twice its time budget and its fine-tuned head stage's,
    plus room to publish."""
    return int((settings.refine_max_seconds + settings.refine_tune_seconds) * 2 + 120)


def lock_ttl(settings: Settings) -> int:
    """The project lock outlives the job it guards (a lock that expired first would let a second
    job of the project start beside a slow one); it is also renewed while the job runs."""
    return job_timeout(settings) + 60


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
# Take the lock over only from the holder that was found dead: if another job took it meanwhile, keep out.
_TAKE_OVER = """
local holder = redis.call('GET', KEYS[1])
if (holder == false and ARGV[1] == '') or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class LockRenewal:
    """Extends the project lock to its full TTL every third of it while the job runs, and only as
    long as this job holds it; a worker killed mid-job stops renewing, so the lock still expires."""

    def __init__(self, conn: redis.Redis, lock_key: str, job_id: str, ttl: int):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(conn, lock_key, job_id, ttl),
                                        name="refine-lock", daemon=True)
        self._thread.start()

    def _run(self, conn: redis.Redis, lock_key: str, job_id: str, ttl: int) -> None:
        while not self._stop.wait(max(1.0, ttl / 3)):
            try:
                if not conn.eval(_RENEW, 1, lock_key, job_id, ttl):
                    return  # taken over or released: not ours to extend
            except redis.RedisError as exc:  # Redis away for a moment: try again at the next tick
                log.warning("could not renew the refinement lock %s: %s", lock_key, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _acquire_project_lock(conn: redis.Redis, lock_key: str, job_id: str, ttl: int) -> bool:
    """One refinement per project. The lock names its job, so a job retried after its worker died
    (same id) or a job that finds the holder no longer running takes the lock over instead of
    waiting for the TTL."""
    if conn.set(lock_key, job_id, nx=True, ex=ttl):
        return True
    holder = (conn.get(lock_key) or b"").decode()
    if holder != job_id:
        try:
            status = Job.fetch(holder, connection=conn, serializer=JSONSerializer).get_status(refresh=True)
        except (NoSuchJobError, ValueError):
            status = None
        if status == JobStatus.STARTED:
            return False
    if not conn.eval(_TAKE_OVER, 1, lock_key, holder, job_id, ttl):
        return False  # another job took it between our look and now
    log.warning("taking over the refinement lock %s from %s", lock_key, holder or "nobody")
    return True
