"""Interactive answers against a real Redis: a span is offered once per task, and never over one
the annotator was seen to mark (the editor sends only the regions connected to the one just
finished, so what it holds cannot be read from one request)."""
from types import SimpleNamespace

from backend.api.interactive import offer_once
from backend.store.proposals import ProposalMemory


def _span(start: int, end: int, label: str = "PER") -> dict:
    return {"from_name": "ner", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": "x" * (end - start), "labels": [label]}, "score": 0.5}


def _starts(answer: dict) -> list[int]:
    return [r["value"]["start"] for r in answer["result"] if r["type"] == "labels"]


def test_a_span_is_offered_once_per_task_whether_the_annotator_kept_or_deleted_it(redis_conn):
    memory = ProposalMemory(redis_conn)
    tone = {"from_name": "tone", "type": "choices", "value": {"choices": ["a"]}}
    first = {"result": [_span(0, 5), _span(10, 15), tone], "score": 0.5}
    nothing_marked = SimpleNamespace(marked={})
    assert offer_once(memory, 7, [{"id": 70}], nothing_marked, first) == first  # all new: all offered
    # the annotator kept (0, 5) and deleted (10, 15); the model proposes both again and a new one
    context = SimpleNamespace(marked={"ner": [(0, 5, "PER")]})
    again = {"result": [_span(0, 5), _span(10, 15), _span(20, 25), tone], "score": 0.5}
    answer = offer_once(memory, 7, [{"id": 70}], context, again)
    assert _starts(answer) == [20] and tone in answer["result"]
    # another task only loses the span its own context marks; a request without a task id, nothing
    assert _starts(offer_once(memory, 7, [{"id": 71}], context, again)) == [10, 20]
    assert offer_once(memory, 7, [{}], context, again) == again


def test_a_span_the_annotator_marked_is_not_proposed_over_even_when_a_later_request_omits_it(redis_conn):
    memory = ProposalMemory(redis_conn)
    marked = SimpleNamespace(marked={"ner": [(4, 9, "PER")]})
    assert _starts(offer_once(memory, 8, [{"id": 80}], marked, {"result": [_span(21, 26)]})) == [21]
    # the next request carries a typed instruction and the choices, not the spans: a fresh
    # extraction finds the marked mention again, one overlapping it, and a new one
    fresh = {"result": [_span(4, 9), _span(0, 9, "ORG"), _span(21, 26), _span(30, 33)]}
    assert _starts(offer_once(memory, 8, [{"id": 80}], SimpleNamespace(marked={}), fresh)) == [30]
