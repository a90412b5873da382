"""Make stored ground truth equal to what Label Studio holds (so a missed or forged webhook
changes nothing that training uses). Needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY."""
from __future__ import annotations

import logging

from ..errors import BadRequest
from ..labeling.label_config import parse_label_config
from ..settings import Settings
from ..store.ground_truth import GoldItem, GroundTruthStore
from .client import as_dict, label_studio_client
from .payloads import gold_from_annotation

log = logging.getLogger(__name__)


def newest_gold(label_task, task: dict) -> GoldItem | None:
    """The gold item of a task's newest usable annotation (cancelled ones never count)."""
    annotations = [as_dict(a) for a in task.get("annotations") or [] if not isinstance(a, int)]
    annotations.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0), reverse=True)
    for annotation in annotations:
        try:
            gold = gold_from_annotation(label_task, task, annotation)
        except BadRequest as exc:  # one malformed annotation must not stop the project's reconciliation
            log.warning("task %s: annotation skipped in reconciliation: %s", task.get("id"), exc.message)
            continue
        if gold is not None:
            return gold
    return None


def reconcile(settings: Settings, store: GroundTruthStore, client=None) -> dict:
    """Replace the project's ground truth with Label Studio's; returns counts, or the error met."""
    try:
        if client is None:
            client = label_studio_client(settings)
        project = as_dict(client.projects.get(id=store.project))
        label_config = project.get("label_config")
        if label_config:
            store.set_label_config(label_config)
        label_task = parse_label_config(label_config or store.label_config() or "")
        items = []
        for task in client.tasks.list(project=store.project, fields="all", only_annotated=True):
            gold = newest_gold(label_task, as_dict(task))
            if gold is not None:
                items.append(gold)
    except Exception as exc:  # Label Studio down or misconfigured: the caller decides (a job fails and is retried)
        log.warning("project %s: reconciliation with Label Studio failed: %s", store.project, exc)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    before = {gold.task_id: _meaning(gold) for gold in store.items()}
    store.replace_all(items)
    after = {gold.task_id: _meaning(gold) for gold in items}
    changed = len(before.keys() ^ after.keys()) + sum(before[t] != after[t] for t in before.keys() & after.keys())
    return {"status": "ok", "before": len(before), "after": len(items), "changed": changed}


def _meaning(gold: GoldItem) -> tuple:
    """What training sees of a gold item (not its timestamps, whose format may differ by source)."""
    return gold.annotation_id, sorted((name, tuple(labels)) for name, labels in gold.labels.items())
