"""The `rq` command `serve` logs for the embedded Redis works as printed: it reaches the unix
socket and reads the JSON-serialized jobs of our queue."""
import shlex
import subprocess

from rq import Queue
from rq.serializers import JSONSerializer

from backend.refinement.scheduler import JOB_FUNC
from backend.store.redis import EmbeddedRedis
from backend.supervisor import rq_command


def test_the_logged_rq_info_command_shows_our_queued_job(tmp_path):
    embedded = EmbeddedRedis(tmp_path)
    try:
        import redis

        conn = redis.Redis.from_url(embedded.url)
        Queue("llm-labeling-test", connection=conn, serializer=JSONSerializer).enqueue(JOB_FUNC, 7)
        command = rq_command("info", embedded.url, "llm-labeling-test")
        assert "--serializer json" in command and embedded.url in command
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "llm-labeling-test" in done.stdout and "1 jobs total" in done.stdout
    finally:
        embedded.close()
