"""The worker as `python -m backend worker` builds it."""
from backend.settings import Settings
from backend.worker import make_worker


def test_an_idle_worker_wakes_for_maintenance_within_its_interval(redis_conn):
    # RQ maintains only between blocking waits on the queue; with its defaults an idle worker
    # waits 405 s, so a dead worker's job and scheduler would sit for minutes past their expiry
    worker = make_worker(Settings.from_env({"RQ_QUEUE_NAME": "worker-unit"}), redis_conn)
    assert worker.maintenance_interval <= 60
    assert 0 < worker.dequeue_timeout < worker.maintenance_interval
    assert [q.name for q in worker.queues] == ["worker-unit"]
