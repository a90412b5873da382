"""What the editor was offered per task: spans proposed to an annotator in interactive requests.

A span the annotator deleted is missing from the regions the editor sends next; remembering what
was offered tells it apart from one never offered, so it is not proposed again for that task.
Kept a day per task: an editing session, not a history.
"""
from __future__ import annotations

import redis

from .redis import key

TTL_SECONDS = 24 * 3600


def span_key(start: int, end: int, label: str) -> str:
    return f"{start}:{end}:{label}"


class ProposalMemory:
    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def _key(self, project: int, task: int, control: str) -> str:
        return key("project", project, "task", task, "proposed", control)

    def removed(self, project: int, task: int, control: str, present: set[str]) -> set[str]:
        """Spans offered before for this task and control that the annotator's regions no longer hold."""
        offered = {m.decode() for m in self.conn.smembers(self._key(project, task, control))}
        return offered - present

    def remember(self, project: int, task: int, control: str, offered: set[str]) -> None:
        if offered:
            pipe = self.conn.pipeline(transaction=False)
            pipe.sadd(self._key(project, task, control), *offered)
            pipe.expire(self._key(project, task, control), TTL_SECONDS)
            pipe.execute()
