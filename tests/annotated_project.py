"""A project's ground truth stored as the webhook stores it, from a data set's items."""
from __future__ import annotations

from backend.evaluation.datasets import Dataset
from backend.labeling.label_config import LabelTask, parse_label_config
from backend.labelstudio.payloads import gold_from_annotation
from backend.store.ground_truth import GroundTruthStore
from tests.ls_payloads import annotation_event


def annotate(redis_conn, dataset: Dataset, project: int, items=None, *,
             configured: bool = True) -> tuple[LabelTask, list[dict]]:
    """`items` of `dataset` (every item by default) stored as ground truth of `project`, with the
    data set's label config unless not `configured` (a project whose config never arrived); (the
    parsed label config, the webhook bodies the items came from)."""
    store = GroundTruthStore(redis_conn, project)
    if configured:
        store.set_label_config(dataset.label_config())
    label_task = parse_label_config(dataset.label_config())
    indices = range(len(dataset.texts)) if items is None else items
    events = [annotation_event(dataset, i, project=project) for i in indices]
    for event in events:
        store.upsert(gold_from_annotation(label_task, event["task"], event["annotation"]))
    return label_task, events
