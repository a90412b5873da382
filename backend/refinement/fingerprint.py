"""What a job's outcome depends on, as one hash: a job that finds the same as the last finished
one (the same ground truth, current version, engine and learning settings) would only repeat its
work, minutes of CPU, to reach the same decision; it ends at once instead.
"""
from __future__ import annotations

import hashlib

from ..settings import Settings
from ..store.ground_truth import GoldItem

# Settings that say when a job runs, not what it learns.
_SCHEDULING = {"refine_min_new", "refine_delay_s", "refine_settle_s"}
_LEARNING = ("calibration", "teacher_base_url", "teacher_model")


def learning_settings(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name in type(settings).model_fields
            if (name.startswith("refine_") and name not in _SCHEDULING) or name in _LEARNING}


def job_fingerprint(settings: Settings, engine: str, lineage: str, current_version: str, gold: list[GoldItem]) -> str:
    digest = hashlib.sha256()
    for part in (engine, lineage, current_version, repr(sorted(learning_settings(settings).items()))):
        digest.update(part.encode("utf-8") + b"\0")
    for item in sorted(gold, key=lambda g: g.task_id):
        digest.update(item.to_json().encode("utf-8") + b"\0")
    return digest.hexdigest()
