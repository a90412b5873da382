"""Model versions per project: what /predict serves, what refinement publishes, what can be rolled back.

A version is a recipe per <Choices> control (prompt + calibration). Version 0 of a lineage (one
label config) is the default prompt with content-free calibration and is never stored. Accepted
versions live in Redis (the serving copy) and as JSON under MODEL_DIR/versions (readable, and
a record that survives a Redis wipe). The label Label Studio sees is
`<engine>.<config hash>.v<N>`: a new config or a new version changes it, so LS re-predicts.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..errors import BadRequest
from ..labeling.label_config import LabelTask
from ..labeling.recipe import ControlRecipe
from ..store.redis import key


@dataclass(frozen=True)
class ModelVersion:
    label: str
    number: int = 0
    lineage: str = ""
    controls: dict[str, ControlRecipe] = field(default_factory=dict)
    kind: str = "base"
    metrics: dict = field(default_factory=dict)
    gt_count: int = 0
    parent: str | None = None
    created_at: float = 0.0
    trained_on: tuple[int, ...] = ()  # task ids whose labels built it: never used to judge it again

    def recipe(self, control_name: str) -> ControlRecipe:
        return self.controls.get(control_name) or ControlRecipe()

    def to_dict(self) -> dict:
        return {
            "model_version": self.label,
            "number": self.number,
            "lineage": self.lineage,
            "kind": self.kind,
            "controls": {name: r.to_dict() for name, r in self.controls.items()},
            "metrics": self.metrics,
            "gt_count": self.gt_count,
            "parent": self.parent,
            "created_at": self.created_at,
            "trained_on": list(self.trained_on),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ModelVersion":
        return cls(
            label=data["model_version"],
            number=int(data["number"]),
            lineage=data["lineage"],
            controls={k: ControlRecipe.from_dict(v) for k, v in (data.get("controls") or {}).items()},
            kind=data.get("kind", "refined"),
            metrics=data.get("metrics") or {},
            gt_count=int(data.get("gt_count") or 0),
            parent=data.get("parent"),
            created_at=float(data.get("created_at") or 0.0),
            trained_on=tuple(int(t) for t in data.get("trained_on") or ()),
        )


class VersionRegistry:
    def __init__(self, conn: redis.Redis | None, engine_id: str, model_dir: Path):
        self.conn = conn
        self.engine_id = engine_id
        self.model_dir = Path(model_dir)

    def label(self, lineage: str, number: int) -> str:
        return f"{self.engine_id}.{lineage[:6]}.v{number}"

    def base(self, lineage: str) -> ModelVersion:
        return ModelVersion(label=self.label(lineage, 0), lineage=lineage)

    def _list_key(self, project: int, lineage: str) -> str:
        return key("project", project, "versions", lineage)

    def _current_key(self, project: int, lineage: str) -> str:
        return key("project", project, "current", lineage)

    def history(self, project: int | None, lineage: str) -> list[ModelVersion]:
        versions = [self.base(lineage)]
        if project is not None and self.conn is not None:
            versions += [ModelVersion.from_dict(json.loads(r)) for r in self.conn.lrange(self._list_key(project, lineage), 0, -1)]
        return versions

    def current_number(self, project: int, lineage: str) -> int:
        return int(self.conn.get(self._current_key(project, lineage)) or 0)

    def current(self, project: int | None, label_task: LabelTask) -> ModelVersion:
        lineage = label_task.config_hash
        if project is None or self.conn is None:
            return self.base(lineage)
        number = self.current_number(project, lineage)
        if number == 0:
            return self.base(lineage)
        raw = self.conn.lindex(self._list_key(project, lineage), number - 1)
        return ModelVersion.from_dict(json.loads(raw)) if raw else self.base(lineage)

    def publish(self, project: int, draft: ModelVersion) -> ModelVersion:
        """Store `draft` as the next version of its lineage and make it current."""
        list_key = self._list_key(project, draft.lineage)
        with self.conn.lock(key("project", project, "versions-lock"), timeout=10):
            number = int(self.conn.llen(list_key)) + 1
            version = ModelVersion(
                **{**draft.__dict__, "number": number, "label": self.label(draft.lineage, number), "created_at": time.time()}
            )
            payload = json.dumps(version.to_dict(), sort_keys=True)
            self._write_file(project, version, payload)
            pipe = self.conn.pipeline(transaction=True)
            pipe.rpush(list_key, payload)
            pipe.set(self._current_key(project, draft.lineage), number)
            pipe.sadd(key("projects"), project)
            pipe.execute()
        return version

    def rollback(self, project: int, lineage: str, target: str) -> ModelVersion:
        """Make an earlier version (its label or number) current again; nothing is deleted."""
        for version in self.history(project, lineage):
            if target in (version.label, str(version.number), f"v{version.number}"):
                self.conn.set(self._current_key(project, lineage), version.number)
                return version
        raise BadRequest(f"project {project} has no version {target!r} for this label config", field="version")

    def lineages(self, project: int) -> list[str]:
        prefix = key("project", project, "versions", "")
        return sorted(k.decode()[len(prefix):] for k in self.conn.scan_iter(match=prefix + "*"))

    def _write_file(self, project: int, version: ModelVersion, payload: str) -> None:
        directory = self.model_dir / "versions" / f"project-{project}"
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{version.label}.json.tmp"
        tmp.write_text(payload + "\n", encoding="utf-8")
        tmp.replace(directory / f"{version.label}.json")
