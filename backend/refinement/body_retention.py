"""Which fine-tuned bodies a project's versions still need, and dropping the others.

A body is the tuned top layers of MiniLM (about 7 MB a layer, in Redis: store/tuned_bodies.py),
and every version a fine-tuned head wins stores a new one. Versions are small and all kept (a
record, and rollback), but their bodies only for the TUNED_BODIES_KEPT newest versions of each
label config and for each one's current version: what a rollback realistically reaches for,
with Redis memory bounded per project. Rolling back further is refused with the reason
(cli.py) rather than served as 503s.
"""
from __future__ import annotations

from ..labeling.model_version import ModelVersion
from ..store.tuned_bodies import TunedBodies
from ..store.versions import VersionRegistry
from .selection.current_refit import tuned_bodies_read


def body_names(version: ModelVersion) -> set[str]:
    """The fine-tuned bodies a version's heads read."""
    return set(tuned_bodies_read(version.controls).values())


def unneeded_bodies(registry: VersionRegistry, project: int, keep: int) -> set[str]:
    """Bodies that only versions older than each lineage's `keep` newest (and not current) read."""
    needed, old = set(), set()
    for lineage in registry.lineages(project):
        stored = registry.history(project, lineage)[1:]  # version 0 has no head
        current = registry.current_number(project, lineage)
        for version in stored:
            recent = version.number > len(stored) - keep or version.number == current
            (needed if recent else old).update(body_names(version))
    return old - needed


def drop_unneeded_bodies(registry: VersionRegistry, bodies: TunedBodies, project: int, keep: int) -> list[str]:
    """Drop what `unneeded_bodies` finds; the names dropped."""
    names = sorted(unneeded_bodies(registry, project, keep))
    bodies.drop(names)
    return names
