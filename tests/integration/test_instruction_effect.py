"""A typed instruction's effect reaches the ground truth, with the real embedded model, the real
Flask app and a real Redis: an interactive /predict answers under the instruction, the annotation
of that task arrives by webhook, and its gold item records the instructed answer, its probability
and whether the annotator chose it (what refinement ranks typed instructions by)."""
import pytest

from backend.store.ground_truth import GroundTruthStore
from backend.store.redis import key

pytestmark = pytest.mark.model

PROJECT = 6
CONFIG = ('<View><Text name="text" value="$text"/>'
          '<TextArea name="prompt" toName="text" editable="true"/>'
          '<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>'
          '</View>')
TEXT = "The room was dirty and the staff ignored us for an hour."
INSTRUCTION = "Is the guest happy with the hotel? Complaints are negative."


def _typed(instruction: str) -> dict:
    return {"id": "p1", "from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [instruction]}}


def _predict(client, task: int, context_result: list | None) -> dict:
    body = {"tasks": [{"id": task, "data": {"text": TEXT}}], "label_config": CONFIG, "project": f"{PROJECT}.1795402611"}
    if context_result is not None:
        body["params"] = {"login": None, "password": None, "context": {"result": context_result}}
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    (prediction,) = r.json["results"]
    return next(region for region in prediction["result"] if region["from_name"] == "sentiment")


def _annotate(client, task: int, annotation: int, label: str, instruction: str, *, stored: int = 1,
              action: str = "ANNOTATION_CREATED", updated_at: str = "2026-12-03T20:00:00Z") -> None:
    result = [{"id": "c1", "from_name": "sentiment", "to_name": "text", "type": "choices",
               "value": {"choices": [label]}}, _typed(instruction)]
    body = {"action": action, "project": {"id": PROJECT, "label_config": CONFIG},
            "task": {"id": task, "data": {"text": TEXT}},
            "annotation": {"id": annotation, "task": task, "result": result, "was_cancelled": False,
                           "updated_at": updated_at}}
    r = client.post("/webhook", json=body)
    assert r.status_code == 200 and r.json.get("stored", 0) == stored, r.json



def test_the_instructed_answer_and_whether_the_annotator_chose_it_are_stored_with_the_ground_truth(
        app_client, redis_conn):
    client = app_client
    answered = _predict(client, 31, [_typed(INSTRUCTION)])
    (label,) = answered["value"]["choices"]
    other = "Negative" if label == "Positive" else "Positive"
    assert _predict(client, 32, [_typed(INSTRUCTION)])["value"]["choices"] == [label]  # same text, same answer
    _predict(client, 33, None)  # a batch request: no instruction, nothing to remember

    _annotate(client, 31, 301, label, INSTRUCTION)  # the annotator kept what the instruction gave
    _annotate(client, 32, 302, other, INSTRUCTION)  # and here chose the other label
    _annotate(client, 33, 303, label, INSTRUCTION)  # typed, but never asked the model on this task
    _annotate(client, 34, 304, label, "")  # nothing typed
    gold = GroundTruthStore(redis_conn, PROJECT).by_task([31, 32, 33, 34])
    effect = {"answer": [label], "probability": pytest.approx(answered["score"], abs=1e-6)}
    assert gold[31].instruction == INSTRUCTION
    assert gold[31].instruction_effect == {"sentiment": {**effect, "agreed": True}}
    assert gold[32].instruction_effect == {"sentiment": {**effect, "agreed": False}}
    assert gold[33].instruction_effect == gold[34].instruction_effect == {}

    # the annotation of task 31 is delivered again: the same item, so not stored again (same bytes)
    raw = redis_conn.hget(key("project", PROJECT, "gt"), "31")
    _annotate(client, 31, 301, label, INSTRUCTION, stored=0, action="ANNOTATION_UPDATED")
    assert redis_conn.hget(key("project", PROJECT, "gt"), "31") == raw

    # another instruction typed on task 31, and the annotation updated with it: that one's answer
    other_instruction = "Answer Positive unless the text insults someone."
    second = _predict(client, 31, [_typed(other_instruction)])
    _annotate(client, 31, 301, other, other_instruction, action="ANNOTATION_UPDATED", updated_at="2026-12-03T21:00:00Z")
    effect = GroundTruthStore(redis_conn, PROJECT).by_task([31])[31].instruction_effect["sentiment"]
    assert effect["answer"] == second["value"]["choices"]
    assert effect["agreed"] == (second["value"]["choices"] == [other])
