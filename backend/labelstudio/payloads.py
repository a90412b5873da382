"""Label Studio payloads → plain values: an annotation → a gold item, a list of objects → ids.

Used by the webhook (events as they happen) and by reconciliation (tasks read back through the
LS API), so both read an annotation the same way; errors name the offending field.
"""
from __future__ import annotations

from ..errors import BadRequest
from ..labeling.label_config import LabelTask
from ..labeling.prompt import clean_text
from ..store.ground_truth import GoldItem


def gold_from_annotation(label_task: LabelTask, task: dict, annotation: dict) -> GoldItem | None:
    """The gold item an annotation gives, or None when it carries no usable choice (or was cancelled)."""
    if annotation.get("was_cancelled"):
        return None
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise BadRequest("the annotation event needs `task.data`", field="task.data")
    labels: dict[str, list[str]] = {}
    allowed = {c.name: set(c.labels) for c in label_task.controls}
    for region in annotation.get("result") or []:
        if not isinstance(region, dict) or region.get("from_name") not in allowed:
            continue
        choices = (region.get("value") or {}).get("choices")
        if isinstance(choices, list):
            kept = [c for c in choices if c in allowed[region["from_name"]]]
            if kept:
                labels[region["from_name"]] = kept
    if not labels:
        return None
    texts = {}
    for control in label_task.controls:
        if control.name in labels:
            value = task["data"].get(control.field)
            if value is None or not clean_text(value):
                return None
            texts[control.field] = clean_text(value)
    try:
        task_id, annotation_id = int(task.get("id") or annotation.get("task")), int(annotation["id"])
    except (TypeError, ValueError, KeyError) as exc:
        raise BadRequest("the annotation event needs numeric `task.id` and `annotation.id`", field="annotation.id") from exc
    updated = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    return GoldItem(task_id, texts, labels, annotation_id, updated)


def id_list(body: dict, name: str, action: str, *, bare_ints: bool = False) -> list[int]:
    """Integer ids of the objects listed under `name` (Label Studio sends `[{"id": 1}, ...]`;
    `bare_ints` also takes `[1, ...]`); an error names the offending element."""
    items = body.get(name)
    if not isinstance(items, list):
        raise BadRequest(f"{action} needs a `{name}` list", field=name)
    ids = []
    for i, item in enumerate(items):
        value = item.get("id") if isinstance(item, dict) else (item if bare_ints else None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{name}[{i}].id must be an integer", field=f"{name}[{i}].id")
        ids.append(value)
    return ids
