"""Model versions per project: what /predict serves, what refinement publishes, what can be rolled back.

Version 0 of a lineage (one label config) is the default prompt with content-free calibration
and is never stored. Accepted versions live in Redis (the serving copy) and as JSON under
MODEL_DIR/versions (readable, and a record that survives a Redis wipe). The label Label Studio
sees is `<engine>.<config hash>.v<N>`: a new config or a new version changes it, so LS
re-predicts. What a version holds is the labeling layer's business (labeling/model_version.py):
the registry is handed that type and only stores its JSON.

Lineages were once named by the hash of the raw XML, and are now named by the hash of what the
config serves. A lineage with no version of its own adopts the versions stored under the old hash
of the same config (an alias, kept), so an upgrade does not send a project back to v0, and the
cosmetic edits after it, which change the old hash, do not either.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import redis

from ..errors import BadRequest
from .redis import key


class StoredVersion(Protocol):
    """What the registry needs of a version type: its identity fields and a JSON form."""

    label: str
    number: int
    lineage: str

    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, data: dict) -> Any: ...


def report_key(project: int, label: str) -> str:
    """Where the HTML report of a published version is kept (any web replica can serve it)."""
    return key("project", project, "report", label)


def project_dir(model_dir: Path, project: int) -> Path:
    """Where a project's versions are written as files: each one's JSON, and its report's folder
    named after its label."""
    return Path(model_dir) / "versions" / f"project-{project}"


class VersionRegistry:
    def __init__(self, conn: redis.Redis | None, engine_id: str, model_dir: Path, version_type: type):
        self.conn = conn
        self.engine_id = engine_id
        self.model_dir = Path(model_dir)
        self.version_type = version_type

    def label(self, lineage: str, number: int) -> str:
        return f"{self.engine_id}.{lineage[:6]}.v{number}"

    def base(self, lineage: str) -> StoredVersion:
        return self.version_type(label=self.label(lineage, 0), lineage=lineage)

    def _list_key(self, project: int, lineage: str) -> str:
        return key("project", project, "versions", lineage)

    def _current_key(self, project: int, lineage: str) -> str:
        return key("project", project, "current", lineage)

    def _alias_key(self, project: int, lineage: str) -> str:
        return key("project", project, "lineage-alias", lineage)

    def stored_lineage(self, project: int, lineage: str, legacy: str | None = None) -> str:
        """The lineage whose versions `lineage` serves: the legacy one it adopted, else itself.

        It adopts `legacy` (the old raw-XML hash of the same config) when it has no version of its
        own and `legacy` has some; the alias is kept, so later publishes continue that lineage and
        a later cosmetic edit, which changes the legacy hash, still finds it."""
        alias_key = self._alias_key(project, lineage)
        if not legacy or legacy == lineage:
            alias = self.conn.get(alias_key)
            return alias.decode() if alias else lineage
        pipe = self.conn.pipeline(transaction=False)
        pipe.get(alias_key)
        pipe.exists(self._list_key(project, lineage))
        pipe.exists(self._list_key(project, legacy))
        alias, own, old = pipe.execute()
        if alias:
            return alias.decode()
        if own or not old:
            return lineage
        self.conn.set(alias_key, legacy, nx=True)  # two configs adopting at once: the first one wins
        return self.conn.get(alias_key).decode()

    def history(self, project: int | None, lineage: str) -> list[StoredVersion]:
        if project is None or self.conn is None:
            return [self.base(lineage)]
        lineage = self.stored_lineage(project, lineage)
        return [self.base(lineage)] + [self.version_type.from_dict(json.loads(r))
                                       for r in self.conn.lrange(self._list_key(project, lineage), 0, -1)]

    def current_number(self, project: int, lineage: str) -> int:
        return int(self.conn.get(self._current_key(project, self.stored_lineage(project, lineage))) or 0)

    def current(self, project: int | None, lineage: str, legacy: str | None = None) -> StoredVersion:
        """The current version of a lineage (a label config's hash) in a project; `legacy`, the
        config's raw-XML hash, finds the versions stored before lineages were semantic."""
        if project is None or self.conn is None:
            return self.base(lineage)
        lineage = self.stored_lineage(project, lineage, legacy)
        number = int(self.conn.get(self._current_key(project, lineage)) or 0)
        if number == 0:
            return self.base(lineage)
        raw = self.conn.lindex(self._list_key(project, lineage), number - 1)
        return self.version_type.from_dict(json.loads(raw)) if raw else self.base(lineage)

    def publish(self, project: int, draft: StoredVersion) -> StoredVersion:
        """Store `draft` as the next version of its lineage (the one it adopted, if any) and make it current."""
        lineage = self.stored_lineage(project, draft.lineage)
        list_key = self._list_key(project, lineage)
        with self.conn.lock(key("project", project, "versions-lock"), timeout=10):
            number = int(self.conn.llen(list_key)) + 1
            version = replace(draft, lineage=lineage, number=number, label=self.label(lineage, number), created_at=time.time())
            payload = json.dumps(version.to_dict(), sort_keys=True)
            self._write_file(project, version, payload)
            pipe = self.conn.pipeline(transaction=True)
            pipe.rpush(list_key, payload)
            pipe.set(self._current_key(project, lineage), number)
            pipe.sadd(key("projects"), project)
            pipe.execute()
        return version

    def rollback(self, project: int, lineage: str, target: str) -> StoredVersion:
        """Make an earlier version (its label or number) current again; nothing is deleted."""
        lineage = self.stored_lineage(project, lineage)
        for version in self.history(project, lineage):
            if target in (version.label, str(version.number), f"v{version.number}"):
                self.conn.set(self._current_key(project, lineage), version.number)
                return version
        raise BadRequest(f"project {project} has no version {target!r} for this label config", field="version")

    def find(self, project: int, target: str) -> list[StoredVersion]:
        """The project's versions, of every lineage with stored ones, that `target` names: by
        label, or by number (`2`, `v2`)."""
        return [v for lineage in self.lineages(project) for v in self.history(project, lineage)
                if target in (v.label, str(v.number), f"v{v.number}")]

    def lineages(self, project: int) -> list[str]:
        prefix = key("project", project, "versions", "")
        return sorted(k.decode()[len(prefix):] for k in self.conn.scan_iter(match=prefix + "*"))

    def _write_file(self, project: int, version: StoredVersion, payload: str) -> None:
        directory = project_dir(self.model_dir, project)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{version.label}.json.tmp"
        tmp.write_text(payload + "\n", encoding="utf-8")
        tmp.replace(directory / f"{version.label}.json")
