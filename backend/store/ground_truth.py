"""The per-project ground-truth store in Redis: one gold item per labelled task.

The newest annotation wins (by `updated_at`, then annotation id) and deleting the annotation
removes it. Writes are atomic Lua scripts, so duplicate or concurrent deliveries store each task
once. Turning Label Studio payloads into gold items is labelstudio/payloads.py's job.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import redis

from .redis import key


@dataclass(frozen=True)
class GoldItem:
    task_id: int
    texts: dict[str, str]  # data field → text
    labels: dict[str, list[str]]  # control name → chosen labels
    annotation_id: int
    updated_at: str
    # <Labels> control name → its spans [start, end, label] in texts[field] (the text as stored
    # here); an empty list is an annotation that marked no entity, which is ground truth too
    spans: dict[str, list[list]] = field(default_factory=dict)
    # what the annotator typed in the config's instruction <TextArea> while labelling ("" if nothing)
    instruction: str = ""
    # choice control name → what the editor answered under that instruction on this text and
    # whether the annotator then chose it: {"answer": [labels], "probability": p, "agreed": bool}
    # (store/instruction_effects.py remembers the answer; refinement ranks typed instructions by it)
    instruction_effect: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        for name in ("instruction", "instruction_effect"):  # as stored before they were: an unchanged
            if not data[name]:  # annotation stays unchanged in storage
                del data[name]
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def with_instructed_answers(self, answers: dict[str, dict]) -> "GoldItem":
        """This item with the effect of its instruction: per control it has labels for, the
        instructed `answers` ({"answer": [labels], "probability": p}) and whether they agree with
        the labels the annotator chose (the same set of labels). Without an instruction, unchanged."""
        if not self.instruction:
            return self
        effect = {name: {"answer": list(a["answer"]), "probability": round(float(a["probability"]), 6),
                         "agreed": sorted(a["answer"]) == sorted(self.labels[name])}
                  for name, a in sorted(answers.items()) if name in self.labels and a.get("answer")}
        return replace(self, instruction_effect=effect) if effect or self.instruction_effect else self

    def carried_from(self, old: "GoldItem | None") -> "GoldItem":
        """This item with the instruction effect `old` (the stored item of the task) holds for
        controls it has none for, when both read the same text under the same instruction: the
        instructed answer outlives the editor's one-day memory of it (an update of the labels a
        week later, a reconciliation that rebuilds the item from Label Studio), its agreement
        judged against this item's labels."""
        if old is None or not old.instruction_effect or old.instruction != self.instruction or old.texts != self.texts:
            return self
        missing = {name: a for name, a in old.instruction_effect.items() if name not in self.instruction_effect}
        if not missing:
            return self
        return self.with_instructed_answers({**missing, **self.instruction_effect})

    @classmethod
    def from_json(cls, raw: str | bytes) -> "GoldItem":
        data = json.loads(raw)
        return cls(**data)


# KEYS: gt hash, annotation→task hash. ARGV: task id, annotation id, updated_at, json.
# Returns 1 when stored (new or changed), 0 when the stored one is newer or identical.
_UPSERT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  if old == ARGV[4] then return 0 end
  local o = cjson.decode(old)
  if o.updated_at > ARGV[3] or (o.updated_at == ARGV[3] and tonumber(o.annotation_id) > tonumber(ARGV[2])) then
    return 0
  end
  redis.call('HDEL', KEYS[2], tostring(o.annotation_id))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: gt hash, annotation→task hash. ARGV: annotation ids. Returns the number of gold items removed.
_DELETE = """
local removed = 0
for _, ann in ipairs(ARGV) do
  local task = redis.call('HGET', KEYS[2], ann)
  if task then
    redis.call('HDEL', KEYS[2], ann)
    local old = redis.call('HGET', KEYS[1], task)
    if old and tostring(cjson.decode(old).annotation_id) == ann then
      redis.call('HDEL', KEYS[1], task)
      removed = removed + 1
    end
  end
end
return removed
"""


DELETE_CHUNK = 1000


class GroundTruthStore:
    """Gold items of one project, and the project's latest label config."""

    def __init__(self, conn: redis.Redis, project: int):
        self.conn = conn
        self.project = project
        self._gt = key("project", project, "gt")
        self._ann = key("project", project, "ann2task")
        self._config = key("project", project, "config")

    def upsert(self, item: GoldItem) -> bool:
        return bool(
            self.conn.eval(_UPSERT, 2, self._gt, self._ann, item.task_id, item.annotation_id, item.updated_at, item.to_json())
        )

    def delete_annotations(self, annotation_ids: list[int]) -> int:
        """Removes the gold items of these annotations, DELETE_CHUNK ids per script: a script
        blocks Redis while it runs, and one bulk delete must not stall every other client."""
        removed = 0
        for start in range(0, len(annotation_ids), DELETE_CHUNK):
            chunk = [str(a) for a in annotation_ids[start:start + DELETE_CHUNK]]
            removed += int(self.conn.eval(_DELETE, 2, self._gt, self._ann, *chunk))
        return removed

    def replace_all(self, items: list[GoldItem]) -> None:
        """Make the store hold exactly `items` (reconciliation with Label Studio). Label Studio
        does not know what the editor answered under a typed instruction: a stored item's
        instruction effect is kept on the new item of its task (GoldItem.carried_from)."""
        stored = {g.task_id: g for g in self.items() if g.instruction_effect}
        items = [item.carried_from(stored.get(item.task_id)) for item in items]
        pipe = self.conn.pipeline(transaction=True)
        pipe.delete(self._gt, self._ann)
        for item in items:
            pipe.hset(self._gt, str(item.task_id), item.to_json())
            pipe.hset(self._ann, str(item.annotation_id), str(item.task_id))
        pipe.execute()

    def items(self) -> list[GoldItem]:
        raw = self.conn.hgetall(self._gt)
        return sorted((GoldItem.from_json(v) for v in raw.values()), key=lambda g: g.task_id)

    def by_task(self, task_ids: list[int]) -> dict[int, GoldItem]:
        """The gold items of these tasks that the store holds."""
        if not task_ids:
            return {}
        raw = self.conn.hmget(self._gt, [str(t) for t in task_ids])
        return {t: GoldItem.from_json(v) for t, v in zip(task_ids, raw) if v is not None}

    def count(self) -> int:
        return int(self.conn.hlen(self._gt))

    def label_config(self) -> str | None:
        raw = self.conn.get(self._config)
        return raw.decode() if raw else None

    def set_label_config(self, label_config: str) -> str | None:
        """Store the project's config; returns the one it replaced (None if there was none).

        Gold items are kept: the job uses those whose labels the current config still has."""
        old = self.conn.getset(self._config, label_config)
        return old.decode() if old is not None else None


# The keys (after llmlb:project:<id>:) that mean a project exists: its ground truth, its label
# config, and its refinement and pre-annotation job lists (a version also adds it to `projects`).
_PROJECT_STATE = {"gt", "config", "runs", "preannotate-runs"}


def known_projects(conn: redis.Redis) -> list[int]:
    """Every project this backend holds state for: a stored version (the `projects` set the
    registry keeps), ground truth, a label config or a job list. A status page lists them all,
    including projects annotated but not yet refined; one SCAN, never KEYS, and read-only."""
    found = {int(p) for p in conn.smembers(key("projects")) if p.isdigit()}
    prefix = key("project", "")
    for raw in conn.scan_iter(match=prefix + "*", count=1000):
        project, _, rest = raw.decode(errors="replace")[len(prefix):].partition(":")
        if project.isascii() and project.isdigit() and rest in _PROJECT_STATE:
            found.add(int(project))
    return sorted(found)
