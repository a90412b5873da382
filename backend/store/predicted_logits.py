"""The label logits `/predict` computed for a version, kept for the project's next job.

Label Studio predicts a task when an annotator opens it, so by the time a task's annotation
arrives the current version has usually scored it. A job judges that version on the newly
labelled items first, and with demonstrations in its prompt that pass is most of the wait
before the job's first better version. Keeping what `/predict` computed (same key as the job's
logit cache, store/logit_cache.py) lets the job read it instead. `/predict` only writes here: its
pace (predict_within) must be that of scoring.

One Redis hash per project and version label, at most MAX_ENTRIES each. A job reads only the
current version's, so at its end the others are dropped (`drop_other_versions`); a version's
entries also expire when it has not predicted for a while. Predictions never wait on it: a
Redis error costs the entries, not the answer.
"""
from __future__ import annotations

import logging

import redis

from .logit_cache import Entry, LogitHash, decode_entry, encode_entry
from .redis import key

log = logging.getLogger(__name__)

TTL_SECONDS = 14 * 24 * 3600  # from the version's last prediction: tasks opened then annotated within two weeks
MAX_ENTRIES = 50_000  # per version; a bulk prediction over more tasks keeps the first ones


def _key(project: int, version: str) -> str:
    return key("project", project, "predicted-logits", version)


def drop_other_versions(conn: redis.Redis, project: int, current: str) -> int:
    """Drop the entries of every version of the project but `current`; how many versions'."""
    prefix = _key(project, "")
    stale = [k for k in conn.scan_iter(match=prefix + "*") if k.decode() != prefix + current]
    if stale:
        conn.delete(*stale)
    return len(stale)


class PredictedLogits(LogitHash):
    def __init__(self, conn: redis.Redis, project: int, version: str, model: str):
        super().__init__(conn, _key(project, version), model)

    def get_many(self, fields: list[bytes]) -> list[Entry | None]:
        if not fields:
            return []
        try:
            values = self.conn.hmget(self.key, fields)
        except redis.RedisError as exc:
            log.warning("predicted logits of %s not read (%s)", self.key, exc)
            return [None] * len(fields)
        return [None if value is None else decode_entry(value) for value in values]

    def holds(self, fields: list[bytes]) -> list[bool]:
        if not fields:
            return []
        try:
            return self.exists(fields)
        except redis.RedisError as exc:
            log.warning("predicted logits of %s not read (%s)", self.key, exc)
            return [False] * len(fields)

    def put_many(self, entries: dict[bytes, Entry]) -> None:
        if not entries:
            return
        try:
            if self.conn.hlen(self.key) >= MAX_ENTRIES:
                return
            pipe = self.conn.pipeline(transaction=False)
            pipe.hset(self.key, mapping={f: encode_entry(*entry) for f, entry in entries.items()})
            pipe.expire(self.key, TTL_SECONDS)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("predicted logits of %s not kept (%s)", self.key, exc)
