"""When no candidate wins, a version fitted on few labels is refit on the ground truth it has
grown to and, with the candidates no worse than it, competes to be published as a refresh, with
the cheap stage, on real parts (Redis, the embedded model). A job that publishes drops the
fine-tuned bodies only older versions read (the rules themselves: test_body_retention.py)."""
import json

import numpy as np
import pytest

from backend.engines.factory import engine_id
from backend.evaluation.datasets import load_dataset
from backend.labeling.calibration import Calibrator
from backend.labeling.head import Embedder, HeadWeights
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.body_retention import unneeded_bodies
from backend.refinement.candidates.embedding_head import train_head
from backend.refinement.job import run_refinement
from backend.settings import Settings
from backend.store.tuned_bodies import TunedBodies
from backend.store.versions import VersionRegistry
from tests.conftest import DATASETS
from tests.annotated_project import annotate

pytestmark = pytest.mark.model

PROJECT = 44
DATA = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=60)
FITTED_ON = 20
BAD_TEMPERATURE = 6.0  # flattens the head's scores towards 0.5


def _only_a_refresh_can_publish(redis_url: str, tmp_path) -> Settings:
    """REFINE_ALPHA so small that no candidate can be significant: only the refresh can publish."""
    return Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MAX_SHOTS": "0", "REFINE_REASONING_SAMPLES": "0",
                              "REFINE_MAX_SECONDS": "7200", "REFINE_REWRITE_ROUNDS": "0", "REFINE_ALPHA": "1e-9",
                              "REFINE_TUNE_SECONDS": "0"})


def test_a_version_fitted_on_few_labels_is_refreshed_once_the_ground_truth_has_doubled(engine, redis_conn, redis_url,
                                                                                      tmp_path):
    """The refresh is published, and then (TUNED_BODIES_KEPT=1) the fine-tuned body only the version
    before the current one read is dropped."""
    settings = _only_a_refresh_can_publish(redis_url, tmp_path).with_overrides(tuned_bodies_kept=1)
    label_task, events = annotate(redis_conn, DATA, PROJECT)
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    bodies = TunedBodies(redis_conn)
    registry.publish(PROJECT, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:tuned-head", gt_count=FITTED_ON,
        controls={"label": ControlRecipe(PromptVersion(), None, HeadWeights(
            ((0.0,) * 384,) * 2, (0.0, 0.0), weight_llm=0.0, embedder="tuned:old"))}))
    bodies.save("tuned:old", 3, b"tensors")
    gold = np.array(DATA.gold)
    coef, intercept = train_head(Embedder().encode(list(DATA.texts[:FITTED_ON])), gold[:FITTED_ON], len(DATA.labels))
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0,
                       temperature=BAD_TEMPERATURE)
    v1 = registry.publish(PROJECT, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:head", gt_count=FITTED_ON,
        controls={"label": ControlRecipe(PromptVersion(), Calibrator.identity(len(DATA.labels)), head)},
        trained_on=tuple(e["task"]["id"] for e in events[:FITTED_ON])))
    assert unneeded_bodies(registry, PROJECT, keep=1) == {"tuned:old"}  # not dropped before a job publishes

    out = run_refinement(settings, redis_conn, PROJECT, engine=engine)

    json.dumps(out)  # the job result is stored as JSON
    assert out["dropped_bodies"] == ["tuned:old"] and not bodies.has("tuned:old"), out
    decision = out["controls"]["label"]
    assert not decision["accepted"]
    # the refit mends the flattened head: no worse than the current version, so it competes
    refit = decision["current_refit"]
    assert refit["no_worse"] and refit["log_loss"] < refit["current_log_loss"] and refit["p_f1_current_better"] >= 1e-9
    # the refresh is the best of what is no worse: the refit, or a candidate at least as good
    chosen = decision["refresh"]
    assert out["status"] == "refreshed" and out["kind"] == f"label:{chosen}", out
    if chosen != "current-refit":
        row = next(c for c in decision["candidates"] if c["name"] == chosen)
        assert row["macro_f1"] >= refit["macro_f1"] and row["log_loss"] < refit["current_log_loss"], row
    v2 = registry.current(PROJECT, label_task.config_hash)
    assert v2.label == out["model_version"] != v1.label and v2.parent == v1.label and v2.gt_count == len(DATA.texts)
    # shipped with the cheap stage, before the LLM candidates ran; nothing after it
    assert [(s["stage"], s["model_version"], s["kind"]) for s in out["stages"]] == [("cheap", v2.label, out["kind"])]
    assert out["stages"][0]["seconds"] < out["seconds"]
    refreshed = v2.recipe("label").head
    assert refreshed is None or (refreshed.temperature < BAD_TEMPERATURE / 2 and refreshed.coef != head.coef)

    again = run_refinement(settings, redis_conn, PROJECT, engine=engine)  # nothing new: the same decision
    assert again["status"] == "unchanged" and again["model_version"] == v2.label and "controls" not in again

    more = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=len(DATA.texts) + 1)
    annotate(redis_conn, more, PROJECT, [len(DATA.texts)])
    later = run_refinement(settings, redis_conn, PROJECT, engine=engine)  # 61 items, fitted on 60: not due
    assert later["status"] == "kept" and later["model_version"] == v2.label
    assert "no_worse" in later["controls"]["label"]["current_refit"]  # computed and shown, not published


MULTI_PROJECT = 45


def test_a_multi_choice_version_fitted_on_few_labels_is_refreshed_too(engine, redis_conn, redis_url, tmp_path):
    """The same for a multi-choice control: per-label calibration, one-vs-rest head and yes/no
    temperature refit on all 40 items, judged by micro-F1 and the log-loss summed over labels."""
    from backend.labeling.calibration import fit_multilabel_calibrator
    from backend.labeling.service import LabelingService
    from backend.refinement.candidates.one_vs_rest_head import train_one_vs_rest
    from backend.refinement.validation.crossval import logits_matrix
    from tests.integration.test_multilabel_refinement_job import emotions_subset

    data = emotions_subset(2 * FITTED_ON)  # the ground truth has just doubled
    settings = _only_a_refresh_can_publish(redis_url, tmp_path)
    label_task, events = annotate(redis_conn, data, MULTI_PROJECT)
    control = label_task.controls[0]
    few = list(data.texts[:FITTED_ON])
    gold = np.zeros((FITTED_ON, len(data.labels)), dtype=np.int8)
    for row, labels in zip(gold, data.label_sets[:FITTED_ON]):
        row[list(labels)] = 1
    service = LabelingService(engine)
    prompt = PromptVersion()
    prior = service.calibrator(control, prompt)
    calibrator = fit_multilabel_calibrator(logits_matrix(service, control, prompt, few), gold, prior)
    coef, intercept = train_one_vs_rest(Embedder().encode(few), gold)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.5,
                       temperature=BAD_TEMPERATURE, one_vs_rest=True)
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    v1 = registry.publish(MULTI_PROJECT, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:calibrated+head", gt_count=FITTED_ON,
        controls={"label": ControlRecipe(prompt, calibrator, head)},
        trained_on=tuple(e["task"]["id"] for e in events[:FITTED_ON])))

    out = run_refinement(settings, redis_conn, MULTI_PROJECT, engine=engine)

    json.dumps(out)
    assert out["status"] == "refreshed" and out["kind"] == "label:current-refit", out
    assert out["controls"]["label"]["refresh"] == "current-refit"  # no other candidate competes here
    refit = out["controls"]["label"]["current_refit"]
    assert refit["no_worse"] and refit["log_loss"] < refit["current_log_loss"]
    v2 = registry.current(MULTI_PROJECT, label_task.config_hash)
    assert v2.parent == v1.label and v2.gt_count == len(data.texts)
    recipe = v2.recipe("label")
    assert recipe.head.one_vs_rest and recipe.head.weight_llm == 0.5
    assert recipe.head.temperature < BAD_TEMPERATURE / 2 and recipe.head.coef != head.coef
    assert recipe.calibrator.method == "fitted-per-label" and recipe.calibrator != calibrator
