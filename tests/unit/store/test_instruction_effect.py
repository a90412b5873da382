"""A ground-truth item carries what the editor answered under its typed instruction and whether
the annotator then chose it; the answers are kept per task and instruction, and a reconciliation
that rebuilds the items from Label Studio keeps the effects (the last two on the test Redis)."""
import json

from backend.store.ground_truth import GoldItem, GroundTruthStore
from backend.store.instruction_effects import TTL_SECONDS, InstructedAnswers

OLD_JSON = json.dumps({"task_id": 3, "texts": {"text": "t"}, "labels": {"tone": ["Good"]}, "annotation_id": 9,
                       "updated_at": "2026-01-01", "spans": {}, "instruction": "be kind"}, sort_keys=True)


def _gold(labels=None, instruction="be kind", text="t") -> GoldItem:
    return GoldItem(3, {"text": text}, labels or {"tone": ["Good"], "topic": ["a", "b"]}, 9, "2026-01-01",
                    instruction=instruction)


def test_an_item_stored_before_effects_loads_and_an_unchanged_one_is_stored_byte_for_byte_as_before():
    gold = GoldItem.from_json(OLD_JSON)
    assert gold.instruction_effect == {}
    assert gold.to_json() == OLD_JSON
    assert gold.with_instructed_answers({}) is gold  # no answer remembered: nothing changes


def test_the_effect_says_whether_the_instructed_answer_was_the_label_chosen():
    answers = {"tone": {"answer": ["Bad"], "probability": 0.8123456789},
               "topic": {"answer": ["b", "a"], "probability": 0.4},  # the same set, in another order
               "gone": {"answer": ["x"], "probability": 0.9}}  # a control the annotation does not label
    gold = _gold().with_instructed_answers(answers)
    assert gold.instruction_effect == {"tone": {"answer": ["Bad"], "probability": 0.812346, "agreed": False},
                                       "topic": {"answer": ["b", "a"], "probability": 0.4, "agreed": True}}
    assert GoldItem.from_json(gold.to_json()) == gold
    assert _gold(instruction="").with_instructed_answers(answers).instruction_effect == {}  # nothing typed


def test_a_stored_effect_is_carried_to_a_later_item_of_the_same_text_and_instruction_and_rejudged():
    stored = _gold().with_instructed_answers({"tone": {"answer": ["Good"], "probability": 0.7}})
    relabelled = _gold(labels={"tone": ["Bad"]}).carried_from(stored)
    assert relabelled.instruction_effect == {"tone": {"answer": ["Good"], "probability": 0.7, "agreed": False}}
    assert _gold().carried_from(stored) == stored
    # another instruction, another text, or nothing stored: nothing to carry
    for later, old in ((_gold(instruction="be strict"), stored), (_gold(text="u"), stored), (_gold(), None)):
        assert later.carried_from(old).instruction_effect == {}
    # a fresh answer wins over the stored one
    fresh = _gold().with_instructed_answers({"tone": {"answer": ["Bad"], "probability": 0.6}})
    assert fresh.carried_from(stored).instruction_effect["tone"]["answer"] == ["Bad"]


def test_answers_are_recalled_per_task_control_and_instruction(redis_conn):
    memory = InstructedAnswers(redis_conn)
    memory.remember(5, 3, "be kind", {"tone": {"answer": ["Good"], "probability": 0.7}})
    memory.remember(5, 3, "be strict", {"tone": {"answer": ["Bad"], "probability": 0.6}})
    assert memory.recall(5, 3, "be kind", ["tone", "topic"]) == {"tone": {"answer": ["Good"], "probability": 0.7}}
    assert memory.recall(5, 3, "be strict", ["tone"])["tone"]["answer"] == ["Bad"]
    assert memory.recall(5, 3, "be nice", ["tone"]) == memory.recall(5, 4, "be kind", ["tone"]) == {}
    assert memory.recall(5, 3, "", ["tone"]) == {}
    assert 0 < redis_conn.ttl("llmlb:project:5:task:3:instructed") <= TTL_SECONDS


def test_a_reconciliation_keeps_the_effect_of_the_same_text_and_instruction(redis_conn):
    store = GroundTruthStore(redis_conn, 5)
    stored = _gold().with_instructed_answers({"tone": {"answer": ["Good"], "probability": 0.7}})
    store.upsert(stored)
    from_label_studio = _gold(labels={"tone": ["Bad"]})  # relabelled in Label Studio, no effect known there
    store.replace_all([from_label_studio, GoldItem(4, {"text": "u"}, {"tone": ["Good"]}, 10, "2026-01-01")])
    kept = store.by_task([3, 4])
    assert kept[3].labels == {"tone": ["Bad"]}
    assert kept[3].instruction_effect == {"tone": {"answer": ["Good"], "probability": 0.7, "agreed": False}}
    assert kept[4].instruction_effect == {}
