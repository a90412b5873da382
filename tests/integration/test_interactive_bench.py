"""`llm-labeling interactive-bench` in a real process: it starts the real stack (gunicorn, worker,
embedded Redis, the embedded model) and times three tasks per mode; bad input is one line, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = Path(sys.executable).with_name("llm-labeling")
UNSET = ("REDIS_URL", "REDIS_HOST", "PORT", "HOST", "LLM_BACKEND", "OPENAI_BASE_URL")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(LOG_LEVEL="WARNING", LLM_N_THREADS="1")
    return subprocess.run([str(SCRIPT), "interactive-bench", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_a_malformed_data_set_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "a", "label": "x"}\nnot json\n', encoding="utf-8")
    done = cli("--dataset", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"Error: {path}, line 2: not valid JSON (Expecting value, column 1)"]


@pytest.mark.model
@pytest.mark.service
def test_three_tasks_per_mode_on_the_real_stack():
    done = cli("--tasks", "3", "--control", "sentiment", "--instruction", "Is the movie review positive or negative?",
               "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["tasks"] == 3 and report["dataset"] == "sentence_polarity" and report["control"] == "sentiment"
    modes = {row["mode"]: row for row in report["modes"]}
    assert list(modes) == ["batch", "evidence", "evidence, other label", "instruction 1"]
    for row in modes.values():
        assert row["requests"] == 3 and row["unexpected_answers"] == 0
        assert 0 < row["warm_p50_ms"] <= row["warm_p95_ms"] <= row["warm_max_ms"]
    assert set(modes["evidence"]["mean_p_yes_by_chosen_label"]) <= {"positive", "negative"}
    paired = report["evidence_same_tasks"]
    assert paired["tasks"] == 3 and 0 <= paired["tasks_higher_with_positive"] <= 3
    for name in ("batch", "instruction 1"):
        assert 0 <= modes[name]["accuracy"] <= 1 and 0 <= modes[name]["macro_f1"] <= 1
    assert modes["instruction 1"]["instruction"] == "Is the movie review positive or negative?"
