"""Label Studio webhook bodies built from the captured fixtures, for a chosen text, label and ids."""
from __future__ import annotations

import copy

from backend.evaluation.datasets import Dataset
from tests.conftest import load_fixture

_CREATED = load_fixture("webhook-annotation-created.json")


def annotation_event(dataset: Dataset, i: int, *, project: int, annotation_id: int | None = None,
                     label: str | None = None, updated_at: str = "2026-11-23T03:00:00.000000Z",
                     action: str = "ANNOTATION_CREATED", cancelled: bool = False) -> dict:
    body = copy.deepcopy(_CREATED)
    body["action"] = action
    task_id = 1000 + i
    body["project"]["id"] = project
    body["project"]["label_config"] = dataset.label_config()
    body["task"].update(id=task_id, project=project, data={"text": dataset.texts[i]})
    if label:
        choices = [label]
    elif dataset.multiple:
        choices = [dataset.labels[j] for j in dataset.label_sets[i]]
    else:
        choices = [dataset.labels[dataset.gold[i]]]
    body["annotation"].update(
        id=annotation_id if annotation_id is not None else 5000 + i, task=task_id, project=project,
        updated_at=updated_at, was_cancelled=cancelled,
        result=[{"id": "r1", "from_name": "label", "to_name": "text", "type": "choices",
                 "value": {"choices": choices}}],
    )
    return body
