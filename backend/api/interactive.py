"""Interactive answers offer a span once per task: one the annotator deleted is not offered again.

Label Studio sends the annotator's current regions with every interactive request, not what they
deleted; the spans offered before (store/proposals.py) that those regions lack are the deleted ones.
"""
from __future__ import annotations

from ..labelstudio.payloads import MAX_ID
from ..store.proposals import ProposalMemory, span_key


def _key_of(region: dict) -> str:
    v = region["value"]
    return span_key(v["start"], v["end"], v["labels"][0])


def offer_once(memory: ProposalMemory, project: int | None, tasks: list, context, prediction: dict) -> dict:
    """`prediction` without the spans the annotator deleted after they were offered for this task;
    what it offers is remembered. Without a project or a task id there is nothing to remember by."""
    task = tasks[0].get("id") if len(tasks) == 1 and isinstance(tasks[0], dict) else None
    if project is None or isinstance(task, bool) or not isinstance(task, int) or not 1 <= task <= MAX_ID:
        return prediction
    spans = [r for r in prediction["result"] if r.get("type") == "labels"]
    kept = []
    for control in dict.fromkeys([r["from_name"] for r in spans]):
        present = {span_key(*m) for m in context.marked.get(control, [])}
        removed = memory.removed(project, task, control, present)
        offered = [r for r in spans if r["from_name"] == control and _key_of(r) not in removed]
        memory.remember(project, task, control, {_key_of(r) for r in offered})
        kept += offered
    kept_ids = {id(r) for r in kept}
    return {**prediction, "result": [r for r in prediction["result"] if r.get("type") != "labels" or id(r) in kept_ids]}
