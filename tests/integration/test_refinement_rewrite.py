"""A refinement run on real parts (Redis, the embedded model as engine and as teacher) lists the
instruction-rewrite candidate in its decision, judged on items its search never looked at."""
import json

import pytest

from backend.evaluation.datasets import load_dataset
from backend.refinement.candidates.instruction_rewrite import MINIBATCH
from backend.refinement.job import run_refinement
from backend.settings import Settings
from tests.conftest import DATASETS
from tests.annotated_project import annotate

pytestmark = pytest.mark.model

PROJECT = 43
DATA = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=80)


def test_the_decision_table_lists_the_rewrite_candidate(engine, redis_conn, redis_url, tmp_path):
    # no few-shot candidates and no job deadline in the way: this test is about the rewrite's wiring
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MAX_SHOTS": "0", "REFINE_REASONING_SAMPLES": "0",
                                  "REFINE_MAX_SECONDS": "7200", "REFINE_REWRITE_ROUNDS": "1",
                                  "REFINE_REWRITE_PROPOSALS": "3", "REFINE_REWRITE_MAX_CALLS": "400",
                                  "REFINE_TUNE_SECONDS": "0"})
    annotate(redis_conn, DATA, PROJECT)

    out = run_refinement(settings, redis_conn, PROJECT, engine=engine)

    decision = out["controls"]["label"]
    json.dumps(out)  # the job result is stored as JSON
    rows = {row["name"]: row for row in decision["candidates"]}
    if "rewrite" not in rows:  # only acceptable reason: the tiny teacher proposed nothing usable
        assert decision["skipped"] == ["rewrite: no usable instruction (teacher proposed none)"], decision
        pytest.skip(f"the local teacher proposed no usable instruction: {decision['skipped']}")
    assert "rewrite+calibrated" in rows
    assert rows["rewrite"]["rewrite_teacher_calls"] == 3
    assert rows["rewrite"]["rewrite_llm_calls"] <= 400
    # every candidate, the current version included, is judged without the search's minibatch
    assert decision["n_eval"] == len(DATA.texts) - MINIBATCH
