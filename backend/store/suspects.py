"""The latest label-error ranking of each project (refinement/validation/label_errors.py).

Each refinement job replaces it whole: a ranking is only as good as the probabilities of the job
that made it, and a stale one would keep flagging labels a reviewer has since fixed (readers drop
those by comparing with the ground truth they hold now).
"""
from __future__ import annotations

import json

import redis

from .ground_truth import GroundTruthStore
from .redis import key

# Kept per control: a reviewer works from the top of the list, and a ranking of thousands of
# suspects says the labels (or the config) need a look as a whole, not item by item.
MAX_SUSPECTS = 500


class UnknownControl(LookupError):
    """A control the ranking has no rows for; the message names the ones it has."""


def narrowed(ranking: dict, control: str | None, limit: int) -> dict:
    """`ranking`'s controls (one, if `control` names it), each with its first `limit` rows."""
    controls = ranking.get("controls", {})
    if control is not None:
        if control not in controls:
            raise UnknownControl(f"no ranking for control {control[:100]!r}; ranked: {sorted(controls) or 'none yet'}")
        controls = {control: controls[control]}
    return {name: {**entry, "suspects": entry["suspects"][:limit]} for name, entry in controls.items()}


class SuspectStore:
    def __init__(self, conn: redis.Redis, project: int):
        self.conn = conn
        self._key = key("project", project, "suspects")
        self._written = key("project", project, "suspects", "label-studio")

    def replace(self, ranking: dict) -> None:
        """`ranking`: {"controls": {name: {"suspects": [row, ...], ...}}, ...}, rows most likely
        wrong first; each control keeps its first MAX_SUSPECTS rows (its `count` says how many
        there were)."""
        controls = {}
        for name, entry in ranking.get("controls", {}).items():
            rows = list(entry.get("suspects", []))
            controls[name] = {**entry, "count": len(rows), "suspects": rows[:MAX_SUSPECTS]}
        self.conn.set(self._key, json.dumps({**ranking, "controls": controls}, ensure_ascii=False))

    def written(self) -> list[int]:
        """The ids of the suspect predictions this service wrote into Label Studio."""
        return [int(i) for i in json.loads(self.conn.get(self._written) or "[]")]

    def set_written(self, ids: list[int]) -> None:
        self.conn.set(self._written, json.dumps(ids))

    def latest(self) -> dict | None:
        raw = self.conn.get(self._key)
        return json.loads(raw) if raw else None

    def open_rows(self, ground_truth: GroundTruthStore) -> dict:
        """The latest ranking ({} before any) without the rows a reviewer has fixed since: the
        ground truth no longer holds that annotation with the labels ranked. Each control counts
        them in `fixed_since`."""
        ranking = self.latest() or {}
        controls = ranking.get("controls", {})
        current = ground_truth.by_task(sorted({row["task_id"] for e in controls.values() for row in e["suspects"]}))
        for name, entry in controls.items():
            rows = [row for row in entry["suspects"] if (g := current.get(row["task_id"])) is not None
                    and g.annotation_id == row["annotation_id"]
                    and sorted(g.labels.get(name, [])) == sorted(row["given"])]
            entry.update(fixed_since=len(entry["suspects"]) - len(rows), suspects=rows)
        return ranking
