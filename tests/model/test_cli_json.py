"""`--json` on the commands that print results, with the real model in real processes of the installed
`llm-labeling` script: stdout is one JSON document (logs and progress bars go to stderr)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATASETS, MODEL_DIR, ROOT

pytestmark = pytest.mark.model

SCRIPT = Path(sys.executable).with_name("llm-labeling")
SMS = DATASETS / "sms_spam" / "test.jsonl"


def run(*args: str) -> dict:
    env = dict(os.environ, MODEL_DIR=str(MODEL_DIR), LOG_LEVEL="INFO", LLM_N_THREADS="1")
    done = subprocess.run([str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_prepare_eval_and_bench_print_json():
    prepared = run("prepare", "--json")
    assert Path(prepared["model"]).is_file() and prepared["backend"] == "llamacpp"

    evaluated = run("eval", "--dataset", str(SMS), "--limit", "4", "--json")
    assert evaluated["n"] == 4 and 0.0 <= evaluated["calibrated"]["accuracy"] <= 1.0

    timed = run("bench", "--dataset", str(SMS), "--limit", "3", "--shots", "1", "--json")
    assert timed["n"] == 3 and timed["zero-shot"]["engine_items_per_s"] > 0
    assert {"1-shot", "4-nearest", "cost_ratio_1-shot_to_zero_shot"} <= set(timed)
