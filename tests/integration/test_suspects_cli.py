"""`python -m backend suspects` reads the ranking a job stored, in real Redis, and leaves out the
labels fixed since."""
import json

from click.testing import CliRunner

from backend.cli import main
from backend.store.ground_truth import GoldItem, GroundTruthStore
from backend.store.suspects import MAX_SUSPECTS, SuspectStore

PROJECT = 77


def gold(task: int, label: str) -> GoldItem:
    return GoldItem(task_id=task, texts={"text": f"t{task}"}, labels={"label": [label]}, annotation_id=task + 100,
                    updated_at="2026-12-01T00:00:00Z")


def row(task: int, given: str, suggested: str, p: float) -> dict:
    return {"task_id": task, "annotation_id": task + 100, "given": [given], "suggested": [suggested],
            "p_given": p, "p_suggested": 1 - p, "confident": True}


def test_the_cli_lists_the_open_suspects(redis_conn, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = GroundTruthStore(redis_conn, PROJECT)
    for item in (gold(1, "spam"), gold(2, "ham"), gold(3, "ham")):
        store.upsert(item)
    rows = [row(1, "spam", "ham", 0.05), row(2, "ham", "spam", 0.2), row(3, "spam", "ham", 0.3)]
    rows += [row(10 + i, "ham", "spam", 0.4) for i in range(MAX_SUSPECTS)]  # more than are kept
    SuspectStore(redis_conn, PROJECT).replace({"project": PROJECT, "model_version": "m.v1", "gt_count": 3,
                                               "computed_at": "2026-12-03T10:00:00Z",
                                               "controls": {"label": {"from": "head", "items": 3, "suspects": rows}}})
    out = CliRunner().invoke(main, ["suspects", "--project", str(PROJECT), "--json"])
    assert out.exit_code == 0, out.output
    entry = json.loads(out.output)["controls"]["label"]
    # task 3 was relabelled "ham" since (its row said "spam"); tasks 10.. have no ground truth any more
    assert [r["task_id"] for r in entry["suspects"]] == [1, 2]
    assert entry["count"] == len(rows) and entry["fixed_since"] == MAX_SUSPECTS - 2

    text = CliRunner().invoke(main, ["suspects", "--project", str(PROJECT), "--limit", "1"])
    assert text.exit_code == 0 and "task 1 " in text.output and "task 2 " not in text.output
    wrong = CliRunner().invoke(main, ["suspects", "--project", str(PROJECT), "--control", "nope"])
    assert wrong.exit_code == 2 and "no ranking for control 'nope'" in wrong.output
    empty = CliRunner().invoke(main, ["suspects", "--project", str(PROJECT + 1)])
    assert empty.exit_code == 0 and "no refinement job has ranked" in empty.output
