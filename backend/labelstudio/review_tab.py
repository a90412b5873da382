"""The label suspects where reviewers work: predictions in Label Studio and a Data Manager tab.

Label Studio 1.23.2 (open source) has no review queue and no comments; what its Data Manager can
filter on is a prediction's model version, and its editor shows a prediction as a tab beside the
annotation, which a reviewer can accept as the fix. So each suspect becomes one prediction under a
model version of its own (SUSPECTS_VERSION), answering with the label the model suggests, its
`score` the probability of that label and `mislabeling` (Label Studio's own field) the chance the
given label is wrong; and each project gets one tab listing the annotated tasks that carry one.
Nothing is written into task data or annotations, so exports stay as they were. The predictions
of the previous ranking are deleted first (their ids are kept with the ranking), so the tab shows
the last one only.
"""
from __future__ import annotations

import logging

from ..labeling.label_config import ChoiceControl
from ..labeling.prediction import answer_region
from .client import as_dict

log = logging.getLogger(__name__)

# No version this service names contains it (theirs are <engine>.<hash>.v<N>): the tab's filter
# matches a substring of any prediction's model version.
SUSPECTS_VERSION = "label-suspects"
TAB_TITLE = "Label suspects"
# Written per project, most likely wrong first: a tab a reviewer can work through, not a dump.
MAX_IN_LABEL_STUDIO = 100


def suspect_predictions(controls: dict[str, ChoiceControl], ranking: dict) -> list[dict]:
    """One prediction per task among the top MAX_IN_LABEL_STUDIO rows of the ranking (a task that
    is a suspect in two controls gets both suggestions in one prediction)."""
    rows = [(name, row) for name, entry in ranking.get("controls", {}).items() if name in controls
            for row in entry["suspects"]]
    rows.sort(key=lambda r: (not r[1].get("confident", True), r[1]["p_given"]))
    by_task: dict[int, dict] = {}
    for name, row in rows:
        task = by_task.get(row["task_id"])
        if task is None:
            if len(by_task) == MAX_IN_LABEL_STUDIO:
                continue
            task = by_task[row["task_id"]] = {"task": row["task_id"], "result": [], "mislabeling": 0.0,
                                              "model_version": SUSPECTS_VERSION}
        task["result"].append(answer_region(controls[name], row["suggested"], row["p_suggested"]))
        task["mislabeling"] = round(max(task["mislabeling"], 1.0 - row["p_given"]), 6)
    for task in by_task.values():
        task["score"] = min(region["score"] for region in task["result"])
    return list(by_task.values())


def tab_data(project: int) -> dict:
    """The Data Manager tab: annotated tasks carrying a suspect prediction."""
    return {"title": TAB_TITLE, "filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
         "value": [SUSPECTS_VERSION]},
        {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}]}}


def publish(client, project: int, predictions: list[dict], owned: list[int]) -> dict:
    """Replace the suspect predictions written before by `predictions`, and add the tab if the
    project has none. `owned` holds the ids of those in Label Studio, and is kept right as they
    are deleted and written, so that a failure half way leaves nothing behind for the next run."""
    deleted = 0
    for prediction_id in list(owned):
        try:
            client.predictions.delete(id=prediction_id)
            deleted += 1
        except Exception as exc:  # deleted by hand, or with its task: nothing left to remove
            if getattr(exc, "status_code", None) != 404:
                raise
        owned.remove(prediction_id)
    for prediction in predictions:
        owned.append(int(as_dict(client.predictions.create(project=project, **prediction))["id"]))
    views = [as_dict(v) for v in client.views.list(project=project)]
    if not any((v.get("data") or {}).get("title") == TAB_TITLE for v in views):
        client.views.create(project=project, data=tab_data(project))
    log.info("project %s: %d label suspects written to Label Studio, %d old ones deleted",
             project, len(predictions), deleted)
    return {"written": len(predictions), "deleted": deleted}
