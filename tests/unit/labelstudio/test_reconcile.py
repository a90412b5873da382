"""Reconciliation reads a task's annotations as Label Studio's API returns them: the newest usable
one wins, and a malformed one is skipped rather than failing the whole project (pure logic)."""
import copy

from backend.labeling.label_config import parse_label_config
from backend.labelstudio.reconcile import newest_gold
from tests.conftest import load_fixture

EVENT = load_fixture("webhook-annotation-created.json")
LABEL_TASK = parse_label_config(EVENT["project"]["label_config"])


def _annotation(id_, updated_at, choice):
    annotation = copy.deepcopy(EVENT["annotation"])
    annotation.update(id=id_, updated_at=updated_at)
    annotation["result"][0]["value"]["choices"] = [choice]
    return annotation


def test_the_newest_usable_annotation_wins_and_a_malformed_one_is_skipped():
    older = _annotation(1, "2026-01-01T00:00:00Z", "Positive")
    newer = _annotation(2, "2026-02-01T00:00:00Z", "Negative")
    task = {**EVENT["task"], "annotations": [older, newer]}
    assert newest_gold(LABEL_TASK, task).labels == {"sentiment": ["Negative"]}
    broken = _annotation(3, "2026-03-01T00:00:00Z", "Neutral")
    broken["result"][0]["value"] = ["Neutral"]  # a list where Label Studio sends an object
    task["annotations"].append(broken)
    gold = newest_gold(LABEL_TASK, task)
    assert (gold.annotation_id, gold.labels) == (2, {"sentiment": ["Negative"]})
