"""The RQ worker process: jobs carry project ids only and use the JSON serializer (never pickle)."""
from __future__ import annotations

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from .settings import Settings
from .store.redis import connect


def make_queue(settings: Settings, connection) -> Queue:
    return Queue(settings.rq_queue_name, connection=connection, serializer=JSONSerializer)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Work the queue; the scheduler runs too, because debounced and retried jobs are scheduled."""
    connection = connect(settings)
    queue = make_queue(settings, connection)
    # Maintenance every minute (RQ's default is 10): a job whose worker died is retried soon after
    # its heartbeat expires instead of up to ten minutes later.
    worker = Worker([queue], connection=connection, serializer=JSONSerializer, maintenance_interval=60)
    return worker.work(burst=burst, with_scheduler=True)
