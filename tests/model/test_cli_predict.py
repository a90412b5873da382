"""`python -m backend predict --project`: a real process predicts with the project's current
version and its stored label config, from real Redis."""
import json
import os
import subprocess
import sys

import pytest

from backend.engines.factory import engine_id
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.recipe import ControlRecipe
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from backend.store.versions import VersionRegistry
from tests.conftest import MODEL_DIR, ROOT

pytestmark = pytest.mark.model

PROJECT = 61
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
          '<Choice value="spam"/><Choice value="ham"/></Choices></View>')


def run(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "predict", *args], input=stdin, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_predict_uses_the_project_s_current_version(redis_conn, redis_url):
    env = dict(os.environ, MODEL_DIR=str(MODEL_DIR), REDIS_URL=redis_url, LOG_LEVEL="WARNING")
    settings = Settings.from_env(env)
    GroundTruthStore(redis_conn, PROJECT).set_label_config(CONFIG)
    lineage = parse_label_config(CONFIG).config_hash
    v1 = VersionRegistry(redis_conn, engine_id(settings), MODEL_DIR, ModelVersion).publish(PROJECT, ModelVersion(
        label="", lineage=lineage, kind="label:calibrated", controls={"label": ControlRecipe()}, gt_count=10))
    tasks = '{"text": "WINNER! claim your free prize now"}\n{"data": {"text": "see you at lunch"}}\n'

    done = run(env, "--project", str(PROJECT), stdin=tasks)
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["model_version"] for p in predictions] == [v1.label, v1.label]
    assert all(p["result"][0]["value"]["choices"][0] in ("spam", "ham") for p in predictions)
    assert f"predicting with {v1.label}" in done.stderr

    plain = run(env, "--labels", "spam,ham", stdin=tasks)  # no project: version 0 of that config
    assert plain.returncode == 0 and json.loads(plain.stdout.splitlines()[0])["model_version"].endswith(".v0")
    unknown = run(env, "--project", str(PROJECT + 1), stdin=tasks)
    assert unknown.returncode == 2 and "no label config stored" in unknown.stderr
