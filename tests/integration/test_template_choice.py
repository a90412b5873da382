"""Version 0's template is chosen without labels on the tasks /predict saw (real embedded model,
real Redis): a sample of distinct texts schedules a job, the job scores every template's answers
on them, publishes the template with the most mutual information as a version of its own, and
/predict serves it; until the sample grows, nothing is chosen again, and the first job on labels
judges that version as it was served."""
import itertools

import numpy as np
import pytest

from backend.app import create_app
from backend.engines.factory import engine_id
from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.templates import DEFAULT, TEMPLATES, mutual_information
from backend.metrics.single_label import macro_f1
from backend.refinement.job import run_refinement
from backend.refinement.selection.template_choice import due
from backend.settings import Settings
from backend.store.ground_truth import GoldItem, GroundTruthStore
from backend.store.unlabelled import MAX_TEXTS, UnlabelledTexts
from backend.store.versions import VersionRegistry
from tests.conftest import DATASETS

pytestmark = pytest.mark.model

CONFIG = ('<View><Text name="text" value="$review"/><Choices name="sentiment" toName="text" choice="single">'
          '<Choice value="positive"/><Choice value="negative"/></Choices></View>')
TEXTS = list(load_dataset(DATASETS / "sentence_polarity" / "train.jsonl", limit=60).texts)
_projects = itertools.count(7100)


def _settings(tmp_path, redis_url) -> Settings:
    return Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "LLM_N_THREADS": "2",
                              "REFINE_REASONING_SAMPLES": "0", "REFINE_REWRITE_ROUNDS": "0",
                              "REFINE_TUNE_SECONDS": "0"})


def _predict(client, project: int, texts: list[str]):
    tasks = [{"id": i + 1, "data": {"review": t}} for i, t in enumerate(texts)]
    r = client.post("/predict", json={"project": f"{project}.1", "label_config": CONFIG, "tasks": tasks})
    assert r.status_code == 200, r.json
    return r.json


def test_a_template_is_chosen_on_unlabelled_tasks_and_served(redis_conn, redis_url, tmp_path, engine):
    settings = _settings(tmp_path, redis_url)
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    client = app.test_client()
    project = next(_projects)

    first = _predict(client, project, TEXTS[:20])
    assert first["model_version"].endswith(".v0")
    assert client.get(f"/jobs?project={project}").json["jobs"] == []  # 20 texts: too few to choose on
    _predict(client, project, TEXTS[:40])  # 20 seen again, 20 new: 40 distinct
    jobs = client.get(f"/jobs?project={project}").json["jobs"]
    assert len(jobs) == 1 and jobs[0]["status"] == "scheduled" and jobs[0]["reason"] == "32 unlabelled texts seen", jobs

    out = run_refinement(settings, redis_conn, project, engine=engine)  # the scheduled job, run here

    chosen = out["templates"]["controls"]["sentiment"]
    assert set(chosen["scores"]) == set(TEMPLATES) and chosen["unlabelled_texts"] == 40
    assert chosen["template"] == max(chosen["scores"], key=chosen["scores"].get)
    assert chosen["template"] != DEFAULT, chosen  # on these texts the default wording is not the best one
    assert out["status"] == "published" and out["model_version"].endswith(".v1"), out
    served = _predict(client, project, TEXTS[:5])
    assert served["model_version"] == out["model_version"]
    detail = client.get(f"/versions?project={project}").json["details"]
    v1 = next(v for v in detail if v["model_version"] == out["model_version"])
    assert v1["kind"] == f"template:sentiment={chosen['template']}" and v1["current"]
    assert v1["metrics"]["sentiment"]["template"]["scores"] == chosen["scores"]
    assert v1["controls"]["sentiment"]["prompt"]["instructions"].startswith(
        TEMPLATES[chosen["template"]].split("{")[0])
    # the chosen template's answers on the same 40 texts set its batch calibration, served as stored
    calibration = v1["controls"]["sentiment"]["calibrator"]
    assert calibration["method"] == "batch" and calibration == chosen["calibration"], (calibration, chosen)
    assert served["results"][0]["score"] == pytest.approx(_served_score(app, project, TEXTS[0]), abs=1e-6)

    again = run_refinement(settings, redis_conn, project, engine=engine)  # the sample has not grown
    assert "templates" not in again and again["status"] == "unchanged", again
    registry = VersionRegistry(redis_conn, engine_id(settings), tmp_path, ModelVersion)
    assert len(registry.history(project, parse_label_config(CONFIG).config_hash)) == 2

    # the first job on labels judges the batch-calibrated version as /predict served it
    data = load_dataset(DATASETS / "sentence_polarity" / "test.jsonl", limit=12)
    answered = _predict(client, project, list(data.texts))["results"]  # what an annotator sees
    store = GroundTruthStore(redis_conn, project)
    for i, (text, gold) in enumerate(zip(data.texts, data.gold)):
        store.upsert(GoldItem(i + 1, {"review": text}, {"sentiment": [data.labels[gold]]}, i + 1, "2026-12-01"))

    labelled = run_refinement(settings.with_overrides(refine_max_shots=0), redis_conn, project, engine=engine)

    assert labelled["current"] == out["model_version"], labelled
    answers = [data.labels.index(r["result"][0]["value"]["choices"][0]) for r in answered]
    judged = labelled["controls"]["sentiment"]["current"]["macro_f1"]
    assert judged == pytest.approx(macro_f1(np.array(data.gold), np.array(answers), 2), abs=1e-3), labelled


def _served_score(app, project: int, text: str) -> float:
    """The top probability of `text` recomputed from the current version's stored recipe."""
    registry = app.extensions["llmlb.versions"]
    task = parse_label_config(CONFIG)
    version = registry.current(project, task.config_hash, task.legacy_hash)
    recipe = version.recipe("sentiment")
    service = app.extensions["llmlb.labeling"]()
    logits = service.logits(task.controls[0], recipe.prompt, text)[0]
    return float(recipe.calibrator.apply(logits, False).max())


def test_without_batch_calibration_the_template_is_served_content_free(redis_conn, redis_url, tmp_path, engine):
    settings = _settings(tmp_path, redis_url).with_overrides(batch_calibration=False)
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    project = next(_projects)
    _predict(app.test_client(), project, TEXTS[:40])

    out = run_refinement(settings, redis_conn, project, engine=engine)

    chosen = out["templates"]["controls"]["sentiment"]
    assert chosen["calibration"] == {"method": "contextual", "batch": "BATCH_CALIBRATION=false"}, chosen
    detail = app.test_client().get(f"/versions?project={project}").json["details"]
    assert next(v for v in detail if v["model_version"] == out["model_version"])["controls"]["sentiment"][
        "calibrator"] is None


def test_a_version_learnt_from_labels_stops_the_sampling(redis_conn, redis_url, tmp_path, engine):
    settings = _settings(tmp_path, redis_url)
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    project = next(_projects)
    registry = app.extensions["llmlb.versions"]
    lineage = parse_label_config(CONFIG).config_hash
    registry.publish(project, ModelVersion(label="", lineage=lineage, kind="sentiment:few-shot-4", gt_count=20))
    _predict(app.test_client(), project, TEXTS[:40])
    assert UnlabelledTexts(redis_conn, project).count("review") == 0
    assert app.test_client().get(f"/jobs?project={project}").json["jobs"] == []


def test_template_choice_off_samples_nothing(redis_conn, redis_url, tmp_path, engine):
    settings = _settings(tmp_path, redis_url).with_overrides(template_choice=False)
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    project = next(_projects)
    _predict(app.test_client(), project, TEXTS[:40])
    assert UnlabelledTexts(redis_conn, project).count("review") == 0
    assert app.test_client().get(f"/jobs?project={project}").json["jobs"] == []


def test_a_control_with_enough_labels_gets_no_template(redis_conn, redis_url, tmp_path, engine):
    settings = _settings(tmp_path, redis_url).with_overrides(refine_max_shots=0)
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    project = next(_projects)
    _predict(app.test_client(), project, TEXTS[:40])
    store = GroundTruthStore(redis_conn, project)
    data = load_dataset(DATASETS / "sentence_polarity" / "test.jsonl", limit=8)
    for i, (text, gold) in enumerate(zip(data.texts, data.gold)):
        store.upsert(GoldItem(i + 1, {"review": text}, {"sentiment": [data.labels[gold]]}, i + 1, "2026-12-01"))

    out = run_refinement(settings, redis_conn, project, engine=engine)

    assert "templates" not in out and "sentiment" in out["controls"], out


def test_the_sample_keeps_distinct_texts_up_to_its_cap(redis_conn):
    sample = UnlabelledTexts(redis_conn, next(_projects))
    assert sample.add("text", ["a", "b", "a"]) == (0, 2)
    assert sample.add("text", ["b", "c"]) == (2, 3)
    sample.add("text", [f"t{i}" for i in range(MAX_TEXTS + 10)])
    assert sample.count("text") == MAX_TEXTS
    assert sample.add("text", ["one more"]) == (MAX_TEXTS, MAX_TEXTS)
    assert sorted(sample.texts("text"))[:3] == ["a", "b", "c"]


def test_mutual_information_and_when_a_choice_is_due():
    confident_and_spread = np.array([[0.99, 0.01], [0.01, 0.99]] * 5)
    always_the_same = np.array([[0.99, 0.01]] * 10)
    undecided = np.full((10, 2), 0.5)
    assert mutual_information(confident_and_spread) == pytest.approx(np.log(2), abs=0.1)
    assert mutual_information(always_the_same) == pytest.approx(0, abs=1e-9)
    assert mutual_information(undecided) == pytest.approx(0, abs=1e-9)
    assert not due(31, 0) and due(32, 0) and due(100, 0)
    assert not due(127, 100) and due(128, 100) and not due(200, 128) and due(MAX_TEXTS, 128)
    assert not due(MAX_TEXTS, MAX_TEXTS)


def test_a_template_replaces_the_served_one_only_when_it_wins_nearly_every_resample():
    from backend.labeling.templates import advantage

    rng = np.random.default_rng(1)
    sharp = np.array([[0.95, 0.05], [0.05, 0.95]] * 40)
    blurred = np.clip(sharp + rng.normal(0, 0.3, sharp.shape), 0.01, None)
    assert advantage(sharp, blurred) >= 0.95  # clearly more informative on nearly every resample
    assert advantage(blurred, sharp) <= 0.05
    assert advantage(sharp, sharp) == 0.0  # a tie is no win: the served template stays
