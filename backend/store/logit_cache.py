"""Label logits a refinement job scored, kept in Redis for the project's next job.

Why: every job judges the current version, and often the plain prompt, on all labelled items,
and between two jobs only the few new items change. With many labels that pass is most of a
job (docs/benchmarks.md), paid again on every save.
An entry is keyed by what determines the logits: the model, its context size, the rendered
prompt (instructions, demonstrations, this item's nearest demos, label branches) and the text;
the float64 logits are stored exactly, so a cached item scores as it would fresh, with the LLM's
state at the answer beside them where the pass computed it (float32, what the engine gives).

One Redis hash per project. After each job the entries it did not touch are dropped (`prune`), so
the hash holds one job's work: the current version's and the plain prompt's logits, which the
next job reads again, plus the candidates', one of which may become the next current version.
What it lacks, a job looks up in what `/predict` kept of the current version (`predicted`,
store/predicted_logits.py): Label Studio predicts a task when an annotator opens it, so the
current version has usually scored the newly labelled items already.
"""
from __future__ import annotations

import hashlib

import numpy as np
import redis

from .redis import key

TTL_SECONDS = 30 * 24 * 3600  # a project nobody labels for a month gives its cache back


# (logits, whether the text was cut to fit, the state at the answer or None)
Entry = tuple[np.ndarray, bool, "np.ndarray | None"]


def logit_field(model: str, multiple: bool, rendered: object, text: str, max_context: int) -> bytes:
    """What an entry is keyed by. `rendered` is the RenderedPrompt with this item's demos (its
    repr is its full content)."""
    digest = hashlib.blake2b(digest_size=20)
    for part in (model, str(max_context), str(bool(multiple)), repr(rendered), text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.digest()


class LogitHash:
    """A Redis hash of one model's entries, keyed by logit_field."""

    def __init__(self, conn: redis.Redis, hash_key: str, model: str):
        self.conn, self.key, self.model = conn, hash_key, model

    def field(self, multiple: bool, rendered: object, text: str, max_context: int) -> bytes:
        return logit_field(self.model, multiple, rendered, text, max_context)

    def exists(self, fields: list[bytes]) -> list[bool]:
        """Whether each field is stored, without reading the values (one round trip)."""
        pipe = self.conn.pipeline(transaction=False)
        for f in fields:
            pipe.hexists(self.key, f)
        return [bool(x) for x in pipe.execute()]


TRUNCATED, WITH_STATE = 1, 2  # bits of an entry's flag byte


def encode_entry(logits: np.ndarray, truncated: bool, state: np.ndarray | None = None) -> bytes:
    """One flag byte, then the exact float64 logits; with a state, the number of logits (4 bytes)
    comes first and the float32 state after them."""
    flags = (TRUNCATED if truncated else 0) | (WITH_STATE if state is not None else 0)
    logits = np.asarray(logits, "<f8")
    if state is None:
        return bytes([flags]) + logits.tobytes()
    return bytes([flags]) + len(logits).to_bytes(4, "little") + logits.tobytes() + np.asarray(state, "<f4").tobytes()


def decode_entry(value: bytes) -> Entry:
    flags = value[0]
    if not flags & WITH_STATE:
        return np.frombuffer(value[1:], dtype="<f8").copy(), bool(flags & TRUNCATED), None
    n = int.from_bytes(value[1:5], "little")
    logits = np.frombuffer(value[5:5 + 8 * n], dtype="<f8").copy()
    return logits, bool(flags & TRUNCATED), np.frombuffer(value[5 + 8 * n:], dtype="<f4").copy()


class LogitCache(LogitHash):
    def __init__(self, conn: redis.Redis, project: int, model: str, predicted=None):
        super().__init__(conn, key("project", project, "logits"), model)
        self.predicted = predicted  # store.predicted_logits.PredictedLogits of the current version, if any
        self.touched: set[bytes] = set()
        self.hits = self.misses = self.predicted_hits = 0

    def get_many(self, fields: list[bytes]) -> list[Entry | None]:
        """(logits, truncated) per field, None where nothing is stored. An entry found only among
        the predicted ones is copied into this cache (the next job finds it here)."""
        if not fields:
            return []
        out = [None if value is None else decode_entry(value) for value in self.conn.hmget(self.key, fields)]
        missing = [i for i, entry in enumerate(out) if entry is None]
        if missing and self.predicted is not None:
            found = self.predicted.get_many([fields[i] for i in missing])
            for i, entry in zip(missing, found):
                out[i] = entry
            copied = {fields[i]: entry for i, entry in zip(missing, found) if entry is not None}
            self.put_many(copied)
            self.predicted_hits += len(copied)
        self.touched.update(f for f, entry in zip(fields, out) if entry is not None)
        self.misses += sum(entry is None for entry in out)
        self.hits += sum(entry is not None for entry in out)
        return out

    def holds(self, fields: list[bytes]) -> list[bool]:
        """Whether each field is stored here or among the predicted (counts as neither hit nor miss)."""
        if not fields:
            return []
        held = self.exists(fields)
        if self.predicted is not None and not all(held):
            missing = [i for i, h in enumerate(held) if not h]
            for i, h in zip(missing, self.predicted.holds([fields[i] for i in missing])):
                held[i] = h
        return held

    def put_many(self, entries: dict[bytes, Entry]) -> None:
        if not entries:
            return
        self.conn.hset(self.key, mapping={f: encode_entry(*entry) for f, entry in entries.items()})
        self.conn.expire(self.key, TTL_SECONDS)
        self.touched.update(entries)

    def prune(self) -> int:
        """Drop what this job did not read or write; the number dropped."""
        stale = [f for f in self.conn.hkeys(self.key) if f not in self.touched]
        for start in range(0, len(stale), 1000):
            self.conn.hdel(self.key, *stale[start:start + 1000])
        return len(stale)

    def stats(self) -> dict:
        """`predicted`: the hits that came from `/predict`'s entries."""
        return {"hits": self.hits, "misses": self.misses, "predicted": self.predicted_hits}
