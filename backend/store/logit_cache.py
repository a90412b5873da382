"""Label logits a refinement job scored, kept in Redis for the project's next job.

Why: every job judges the current version, and often the plain prompt, on all labelled items,
and between two jobs only the few new items change. With many labels that pass is most of a
job (docs/benchmarks.md), paid again on every save.
An entry is keyed by what determines the logits: the model, its context size, the rendered
prompt (instructions, demonstrations, this item's nearest demos, label branches) and the text;
the float64 logits are stored exactly, so a cached item scores as it would fresh.

One Redis hash per project. After each job the entries it did not touch are dropped (`prune`), so
the hash holds one job's work: the current version's and the plain prompt's logits, which the
next job reads again, plus the candidates', one of which may become the next current version.
"""
from __future__ import annotations

import hashlib

import numpy as np
import redis

from .redis import key

TTL_SECONDS = 30 * 24 * 3600  # a project nobody labels for a month gives its cache back


class LogitCache:
    def __init__(self, conn: redis.Redis, project: int, model: str):
        self.conn = conn
        self.key = key("project", project, "logits")
        self.model = model
        self.touched: set[bytes] = set()
        self.hits = self.misses = 0

    def field(self, multiple: bool, rendered: object, text: str, max_context: int) -> bytes:
        """`rendered` is the RenderedPrompt with this item's demos (its repr is its full content)."""
        digest = hashlib.blake2b(digest_size=20)
        for part in (self.model, str(max_context), str(bool(multiple)), repr(rendered), text):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return digest.digest()

    def get_many(self, fields: list[bytes]) -> list[tuple[np.ndarray, bool] | None]:
        """(logits, truncated) per field, None where nothing is stored."""
        if not fields:
            return []
        values = self.conn.hmget(self.key, fields)
        out = []
        for f, value in zip(fields, values):
            if value is None:
                out.append(None)
                self.misses += 1
                continue
            self.touched.add(f)
            self.hits += 1
            out.append((np.frombuffer(value[1:], dtype="<f8").copy(), value[:1] == b"\1"))
        return out

    def holds(self, fields: list[bytes]) -> list[bool]:
        """Whether each field is stored (counts as neither hit nor miss)."""
        if not fields:
            return []
        pipe = self.conn.pipeline(transaction=False)
        for f in fields:
            pipe.hexists(self.key, f)
        return [bool(x) for x in pipe.execute()]

    def put_many(self, entries: dict[bytes, tuple[np.ndarray, bool]]) -> None:
        if not entries:
            return
        self.conn.hset(self.key, mapping={f: (b"\1" if truncated else b"\0") + np.asarray(logits, "<f8").tobytes()
                                          for f, (logits, truncated) in entries.items()})
        self.conn.expire(self.key, TTL_SECONDS)
        self.touched.update(entries)

    def prune(self) -> int:
        """Drop what this job did not read or write; the number dropped."""
        stale = [f for f in self.conn.hkeys(self.key) if f not in self.touched]
        for start in range(0, len(stale), 1000):
            self.conn.hdel(self.key, *stale[start:start + 1000])
        return len(stale)

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses}
