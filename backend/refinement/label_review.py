"""After every job, the labels most likely wrong (refinement/validation/label_errors.py) as a
reviewer needs them: stored per project for /projects/<id>/suspects and the CLI, and shown in
Label Studio where reviewers work (labelstudio/review_tab.py).
"""
from __future__ import annotations

import logging
import time

import redis

from ..labeling.label_config import ChoiceControl, LabelTask
from ..settings import Settings
from ..store.ground_truth import GoldItem
from ..store.suspects import SuspectStore

log = logging.getLogger(__name__)


def suspect_rows(control: ChoiceControl, judged: list[GoldItem], decision) -> dict:
    """A control's label-error ranking (decision.issues, positions among `judged`, the items the
    job judged) as what a reviewer needs: the task and annotation, the labels given and
    suggested, and their probabilities."""
    rows = []
    for issue in decision.issues:
        item = judged[issue.position]
        rows.append({"task_id": item.task_id, "annotation_id": item.annotation_id,
                     "given": [control.labels[j] for j in issue.given],
                     "suggested": [control.labels[j] for j in issue.suggested],
                     "p_given": round(issue.p_given, 4), "p_suggested": round(issue.p_suggested, 4),
                     "confident": issue.confident})
    return {"from": decision.issues_from, "items": len(judged), "suspects": rows}


def keep_ranking(settings: Settings, conn: redis.Redis, project: int, label_task: LabelTask, ranking: dict) -> dict:
    """Store the job's ranking (replacing the last one) and, with the Label Studio API, show it
    there; returns what to add to the job's result."""
    ranking = {**ranking, "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    SuspectStore(conn, project).replace(ranking)
    if not settings.label_studio_api:
        return {}
    return {"suspects_in_label_studio": show_suspects(settings, conn, project, label_task, ranking)}


def show_suspects(settings: Settings, conn: redis.Redis, project: int, label_task: LabelTask, ranking: dict) -> dict:
    """The ranking as predictions and a tab in Label Studio (labelstudio/review_tab.py). A
    failure is reported in the job's result, not raised: the version and the ranking stand."""
    from ..labelstudio.client import label_studio_client
    from ..labelstudio.review_tab import publish, suspect_predictions

    store = SuspectStore(conn, project)
    owned = store.written()
    try:
        return publish(label_studio_client(settings), project,
                       suspect_predictions({c.name: c for c in label_task.controls}, ranking), owned)
    except Exception as exc:
        log.warning("project %s: the label suspects could not be written to Label Studio: %s", project, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        store.set_written(owned)
