"""`llm-labeling preannotate --dry-run` against a real Label Studio: it counts the tasks the run would
predict after its own filters, estimates the time from a few of them predicted by the real model, and
writes nothing; a wrong token or project is one line and exit 1. Runs the installed console script
with its own MODEL_DIR (embedded Redis) and LLM_N_THREADS=1: our service is not needed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.evaluation.datasets import load_dataset
from tests.conftest import DATASETS, MODEL_DIR, ROOT

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).with_name("llm-labeling")
DATA = load_dataset(DATASETS / "sms_spam" / "test.jsonl", limit=6)


@pytest.fixture(scope="module")
def env(label_studio, tmp_path_factory) -> dict:
    from backend.engines.factory import prepare_model
    from backend.settings import Settings

    gguf = prepare_model(Settings.from_env({"MODEL_DIR": str(MODEL_DIR)}))
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OPENAI_", "LLM_"))},
            "MODEL_DIR": str(tmp_path_factory.mktemp("dry-run")), "LLM_MODEL": str(gguf.resolve()),
            "LLM_N_THREADS": "1", "LOG_LEVEL": "WARNING",
            "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_dry_run_says_what_a_run_would_do_and_writes_nothing(label_studio, env):
    ls = label_studio
    project = ls.call("POST", "/api/projects", json={"title": "e2e dry run", "label_config": DATA.label_config()})["id"]
    ls.call("POST", f"/api/projects/{project}/import", json=[{"text": t} for t in DATA.texts])
    first = min(t["id"] for t in ls.tasks(project))
    ls.call("POST", "/api/predictions", json={  # an older model's prediction: --only-missing leaves it out
        "task": first, "model_version": "older", "score": 0.5,
        "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [DATA.labels[0]]}}]})
    model_version = ls.call("GET", f"/api/projects/{project}")["model_version"]

    done = cli(env, "preannotate", "--project", str(project), "--dry-run", "--sample", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    estimate = json.loads(done.stdout)
    assert (estimate["dry_run"], estimate["tasks"], estimate["to_predict"], estimate["sampled"]) == (True, 6, 6, 3)
    assert estimate["model_version"].endswith(".v0") and estimate["estimated_seconds"] > 0
    assert estimate["tokens_per_task"] is None and estimate["estimated_cost"] is None  # the local model
    assert "dry run, nothing written: 6 tasks would be predicted, about " in done.stderr
    assert "no token cost (local model)" in done.stderr

    missing = json.loads(cli(env, "preannotate", "--project", str(project), "--dry-run", "--only-missing",
                             "--sample", "0", "--json").stdout)
    assert (missing["to_predict"], missing["not_selected"], missing["estimated_seconds"]) == (5, 1, None)

    assert [p["model_version"] for p in ls.predictions(project)] == ["older"]  # nothing written
    assert ls.call("GET", f"/api/projects/{project}")["model_version"] == model_version

    refused = cli({**env, "LABEL_STUDIO_API_KEY": "0" * 40}, "preannotate", "--project", str(project), "--dry-run")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (f"Error: Label Studio at {ls.url} refused the API key (401: Invalid token.) "
                                      f"while reading project {project}: check LABEL_STUDIO_API_KEY")
    unknown = cli(env, "preannotate", "--project", "987654", "--dry-run")
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        f"Error: Label Studio at {ls.url} has no project 987654 (404)"
