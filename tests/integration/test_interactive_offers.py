"""Interactive answers against a real Redis: a span the annotator deleted is not offered again."""
from types import SimpleNamespace

from backend.api.interactive import offer_once
from backend.store.proposals import ProposalMemory


def _span(start: int, end: int, label: str = "PER") -> dict:
    return {"from_name": "ner", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": "x" * (end - start), "labels": [label]}, "score": 0.5}


def test_a_deleted_span_is_not_offered_again_for_that_task(redis_conn):
    memory = ProposalMemory(redis_conn)
    tone = {"from_name": "tone", "type": "choices", "value": {"choices": ["a"]}}
    first = {"result": [_span(0, 5), _span(10, 15), tone], "score": 0.5}
    nothing_marked = SimpleNamespace(marked={})
    assert offer_once(memory, 7, [{"id": 70}], nothing_marked, first) == first  # all new: all offered
    # the annotator accepted (0, 5) and deleted (10, 15); the model offers both again and a new one
    context = SimpleNamespace(marked={"ner": [(0, 5, "PER")]})
    again = {"result": [_span(0, 5), _span(10, 15), _span(20, 25), tone], "score": 0.5}
    answer = offer_once(memory, 7, [{"id": 70}], context, again)
    assert [r["value"]["start"] for r in answer["result"] if r["type"] == "labels"] == [0, 20]
    assert tone in answer["result"]
    # another task, and a request without a task id, are not affected
    assert offer_once(memory, 7, [{"id": 71}], context, again) == again
    assert offer_once(memory, 7, [{}], context, again) == again
