"""When no candidate wins, a version fitted on few labels is refit on the ground truth it has
grown to and published as a refresh, on real parts (Redis, the embedded model)."""
import json

import numpy as np
import pytest

from backend.engines.factory import engine_id
from backend.evaluation.datasets import load_dataset
from backend.labeling.calibration import Calibrator
from backend.labeling.head import Embedder, HeadWeights
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.ground_truth import GroundTruthStore, gold_from_annotation
from backend.refinement.head import train_head
from backend.refinement.refine import run_refinement
from backend.refinement.versions import ModelVersion, VersionRegistry
from backend.settings import Settings
from tests.conftest import DATASETS
from tests.ls_payloads import annotation_event

pytestmark = pytest.mark.model

PROJECT = 44
DATA = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=60)
FITTED_ON = 20
BAD_TEMPERATURE = 6.0  # flattens the head's scores towards 0.5


def test_a_version_fitted_on_few_labels_is_refreshed_once_the_ground_truth_has_doubled(engine, redis_conn, redis_url,
                                                                                      tmp_path):
    # REFINE_ALPHA so small that no candidate can be significant: only the refresh can publish
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MAX_SHOTS": "0",
                                  "REFINE_MAX_SECONDS": "7200", "REFINE_REWRITE_ROUNDS": "0",
                                  "REFINE_ALPHA": "1e-9"})
    store = GroundTruthStore(redis_conn, PROJECT)
    store.set_label_config(DATA.label_config())
    label_task = parse_label_config(DATA.label_config())
    events = [annotation_event(DATA, i, project=PROJECT) for i in range(len(DATA.texts))]
    for event in events:
        store.upsert(gold_from_annotation(label_task, event["task"], event["annotation"]))
    gold = np.array(DATA.gold)
    coef, intercept = train_head(Embedder().encode(list(DATA.texts[:FITTED_ON])), gold[:FITTED_ON], len(DATA.labels))
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0,
                       temperature=BAD_TEMPERATURE)
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir)
    v1 = registry.publish(PROJECT, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:head", gt_count=FITTED_ON,
        controls={"label": ControlRecipe(PromptVersion(), Calibrator.identity(len(DATA.labels)), head)},
        trained_on=tuple(e["task"]["id"] for e in events[:FITTED_ON])))

    out = run_refinement(settings, redis_conn, PROJECT, engine=engine)

    json.dumps(out)  # the job result is stored as JSON
    assert out["status"] == "refreshed" and out["kind"] == "label:current-refit", out
    decision = out["controls"]["label"]
    assert not decision["accepted"]
    refit = decision["current_refit"]
    assert refit["no_worse"] and refit["log_loss"] < refit["current_log_loss"] and refit["p_f1_current_better"] >= 1e-9
    v2 = registry.current(PROJECT, label_task)
    assert v2.label == out["model_version"] != v1.label and v2.parent == v1.label and v2.gt_count == len(DATA.texts)
    refreshed = v2.recipe("label").head
    assert refreshed.weight_llm == 0.0 and refreshed.temperature < BAD_TEMPERATURE / 2
    assert refreshed.coef != head.coef  # the head itself was refit on all 60 items

    again = run_refinement(settings, redis_conn, PROJECT, engine=engine)  # 60 items, fitted on 60: not due
    assert again["status"] == "kept" and again["model_version"] == v2.label
    assert "no_worse" in again["controls"]["label"]["current_refit"]  # computed and shown, not published
