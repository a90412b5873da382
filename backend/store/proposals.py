"""What the editor has seen per task: spans proposed to an annotator in interactive requests, and
spans the annotator was seen to mark. Interactive answers propose none of them again
(api/interactive.py). Kept a day per task: an editing session, not a history.
"""
from __future__ import annotations

import redis

from .redis import key

TTL_SECONDS = 24 * 3600


def span_key(start: int, end: int, label: str) -> str:
    return f"{start}:{end}:{label}"


def span_bounds(key: str) -> tuple[int, int]:
    start, end, _ = key.split(":", 2)
    return int(start), int(end)


class ProposalMemory:
    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def _key(self, project: int, task: int, control: str) -> str:
        return key("project", project, "task", task, "proposed", control)

    def known(self, project: int, task: int, control: str) -> set[str]:
        """Spans of this task and control offered before or seen marked."""
        return {m.decode() for m in self.conn.smembers(self._key(project, task, control))}

    def remember(self, project: int, task: int, control: str, offered: set[str]) -> None:
        if offered:
            pipe = self.conn.pipeline(transaction=False)
            pipe.sadd(self._key(project, task, control), *offered)
            pipe.expire(self._key(project, task, control), TTL_SECONDS)
            pipe.execute()
