"""Interactive answers offer a span at most once per task, and never over one the editor has.

Label Studio's editor does not send the whole annotation with an interactive request: only the
region just finished and the regions connected to it (same type, same label, same target), and
it applies suggestions on text at once, with no accept step. So one request cannot say which
spans the annotator holds or deleted. Every span offered for a task, and every span seen marked
in a request, is remembered (store/proposals.py); a later answer offers none of them again, nor
any span overlapping one: a deleted one stays deleted, a held one is not duplicated.
"""
from __future__ import annotations

from ..labelstudio.payloads import MAX_ID
from ..store.proposals import ProposalMemory, span_bounds, span_key


def _key_of(region: dict) -> str:
    v = region["value"]
    return span_key(v["start"], v["end"], v["labels"][0])


def _overlaps(region: dict, known: set[str]) -> bool:
    start, end = region["value"]["start"], region["value"]["end"]
    return any(s < end and start < e for s, e in map(span_bounds, known))


def offer_once(memory: ProposalMemory, project: int | None, tasks: list, context, prediction: dict) -> dict:
    """`prediction` without the spans this task was offered before or was seen to hold, or that
    overlap one; what it offers and what the context marks is remembered. Without a project or a
    task id there is nothing to remember by."""
    task = tasks[0].get("id") if len(tasks) == 1 and isinstance(tasks[0], dict) else None
    if project is None or isinstance(task, bool) or not isinstance(task, int) or not 1 <= task <= MAX_ID:
        return prediction
    spans = [r for r in prediction["result"] if r.get("type") == "labels"]
    kept = []
    for control in dict.fromkeys([r["from_name"] for r in spans] + list(context.marked)):
        marked = {span_key(*m) for m in context.marked.get(control, [])}
        known = memory.known(project, task, control) | marked
        offered = [r for r in spans if r["from_name"] == control and not _overlaps(r, known)]
        memory.remember(project, task, control, marked | {_key_of(r) for r in offered})
        kept += offered
    kept_ids = {id(r) for r in kept}
    return {**prediction, "result": [r for r in prediction["result"] if r.get("type") != "labels" or id(r) in kept_ids]}
