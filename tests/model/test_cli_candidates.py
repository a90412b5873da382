"""`python -m backend candidates`: the refinement optimizer on a labelled file, real model, real process."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import DATASETS, MODEL_DIR, ROOT

pytestmark = pytest.mark.model


def test_candidates_prints_every_candidate_against_version_0():
    env = dict(os.environ, MODEL_DIR=str(MODEL_DIR), LOG_LEVEL="WARNING",
               REFINE_REASONING_SAMPLES="0")  # the reasoning candidates have tests of their own
    done = subprocess.run(
        [sys.executable, "-m", "backend", "candidates", "--dataset", str(DATASETS / "sms_spam" / "train.jsonl"),
         "--limit", "40", "--shots", "0", "--no-rewrite",
         "--test", str(DATASETS / "sms_spam" / "test.jsonl"), "--test-limit", "20"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cv_part, test_part = done.stdout.split("served on ")
    rows = {line.split("|")[1].strip(): line for line in cv_part.splitlines() if line.startswith("| ")}
    assert {"current", "calibrated", "head"} <= set(rows)
    assert "(20 items, test.jsonl)" in test_part
    served = [line.split("|")[1:-1] for line in test_part.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [cells[0].strip().removesuffix(" (chosen)") for cells in served] == [n for n in rows if n != "candidate"]
    for cells in served:  # test accuracy, macro-F1 and ECE are numbers in [0, 1]
        assert all(0.0 <= float(v) <= 1.0 for v in cells[3:6]), cells
    assert any(name.endswith("+head") for name in rows)  # the head pooled with the best LLM candidate
    assert "judged on 40" in done.stdout and "chosen: " in done.stdout
    bad = subprocess.run([sys.executable, "-m", "backend", "candidates", "--dataset",
                          str(DATASETS / "goemotions" / "test.jsonl")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "single-label" in bad.stderr


def test_candidates_json_is_the_same_decision_as_the_tables():
    env = dict(os.environ, MODEL_DIR=str(MODEL_DIR), LOG_LEVEL="WARNING",
               REFINE_REASONING_SAMPLES="0")
    done = subprocess.run(
        [sys.executable, "-m", "backend", "candidates", "--dataset", str(DATASETS / "sms_spam" / "train.jsonl"),
         "--limit", "30", "--shots", "0", "--no-rewrite", "--json",
         "--test", str(DATASETS / "sms_spam" / "test.jsonl"), "--test-limit", "10"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # JSON alone on stdout: no table
    assert (result["dataset"], result["items"], result["judged_on"]) == ("sms_spam", 30, 30)
    names = [row["name"] for row in result["candidates"]]
    assert {"current", "calibrated", "head"} <= set(names) and result["chosen"] in names
    assert isinstance(result["accepted"], bool) and 0.0 <= result["p_value"] <= 1.0
    served = result["served"]
    assert (served["items"], served["file"]) == (10, "test.jsonl")
    assert [row["name"].removesuffix(" (chosen)") for row in served["rows"]] == names
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in served["rows"])
