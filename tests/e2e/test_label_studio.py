"""The whole loop through a real Label Studio: connect with basic auth → predictions (Retrieve
predictions, opening a task, `preannotate`, new tasks on import) → active-learning order by
prediction score → 40 annotations → training started from Label Studio → a new model version
whose predictions Label Studio fetches.

Every check reads what Label Studio stored (GET /api/predictions, /api/tasks, /api/ml): its own
replies say "Retrieved N predictions" even when the backend failed. The tests run in file order
and build on each other's state (one project), as a person would click through it.
"""
from __future__ import annotations

import json
import signal
import time

import pytest

from backend.evaluation.datasets import load_dataset
from backend.labelstudio.review_tab import SUSPECTS_VERSION, TAB_TITLE
from tests.conftest import DATASETS
from tests.e2e.conftest import BASIC_AUTH, TIMINGS, LabelStudioError

pytestmark = pytest.mark.e2e

DATA = load_dataset(DATASETS / "sms_spam" / "test.jsonl", limit=105)
FIRST, LATER = 100, 5  # imported before connecting the backend / after (→ TASKS_CREATED)
GOLD = {}
for _text, _gold in zip(DATA.texts, DATA.gold):
    GOLD.setdefault(_text, DATA.labels[_gold])
RETRIEVE_BATCH = 20  # tasks per "Retrieve predictions": LS gives the whole /predict call 100 s
PREDICTED_BY_LS = 90  # the other 10 are left to opening a task and to `preannotate --only-missing`
N_ANNOTATIONS = 40
SLIPS = 3  # annotations given the wrong label on purpose: the reviewers' tab must list some of them
BELOW = 0.8


class State:
    """What one test leaves for the next (ids Label Studio gave, versions it showed)."""

    project: int
    ml: int
    ids: list[int]
    al_order: list[int]
    slips: set[int]
    v0: str
    v1: str


S = State()


def poll(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def by_task(predictions: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for p in predictions:
        out.setdefault(p["task"], []).append(p)
    return out


def assert_prediction(p: dict, version: str) -> None:
    assert p["model_version"] == version
    assert 0.0 < p["score"] <= 1.0
    (region,) = p["result"]
    assert region["from_name"] == "label" and region["to_name"] == "text" and region["type"] == "choices"
    (choice,) = region["value"]["choices"]
    probabilities = region["probabilities"]  # our region key, stored verbatim by Label Studio
    assert set(probabilities) == set(DATA.labels)
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    assert probabilities[choice] == pytest.approx(p["score"], abs=1e-6) == max(probabilities.values())


def run_cli(service, *args: str, timeout: float = 900) -> dict:
    proc = service.cli(*args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.fixture(scope="module")
def ls(label_studio):
    return label_studio


def test_backend_connects_with_basic_auth(ls, service):
    project = ls.call("POST", "/api/projects", json={"title": "e2e sms spam", "label_config": DATA.label_config()})
    S.project = project["id"]
    ls.call("POST", f"/api/projects/{S.project}/import", json=[{"text": t} for t in DATA.texts[:FIRST]])
    S.ids = sorted(t["id"] for t in ls.tasks(S.project))
    assert len(S.ids) == FIRST

    wrong = {"url": service.url, "project": S.project, "title": "llm", "auth_method": "BASIC_AUTH",
             "basic_auth_user": BASIC_AUTH[0], "basic_auth_pass": "wrong"}
    with pytest.raises(LabelStudioError, match="→ 400"):
        ls.call("POST", "/api/ml", json=wrong)
    ml = ls.call("POST", "/api/ml", json={**wrong, "basic_auth_pass": BASIC_AUTH[1]})
    S.ml = ml["id"]
    assert ml["state"] == "CO", ml
    S.v0 = ml["model_version"]
    assert S.v0.endswith(".v0")
    # Label Studio names the live backend as the project's model version, not our version string
    assert ls.call("GET", f"/api/projects/{S.project}")["model_version"] == "llm"


def test_retrieve_predictions_stores_our_version_and_score(ls, service):
    t0 = time.monotonic()
    for start in range(0, PREDICTED_BY_LS, RETRIEVE_BATCH):
        reply = ls.retrieve_predictions(S.project, S.ids[start:min(start + RETRIEVE_BATCH, PREDICTED_BY_LS)])
        assert "Retrieved" in reply["detail"]  # said even when nothing was stored: check below
    TIMINGS["retrieve_90_predictions_s"] = round(time.monotonic() - t0, 1)
    stored = by_task(ls.predictions(S.project))
    assert sorted(stored) == S.ids[:PREDICTED_BY_LS]
    for (p,) in stored.values():
        assert_prediction(p, S.v0)
    assert ls.call("GET", f"/api/projects/{S.project}/model-versions")[S.v0] == PREDICTED_BY_LS
    # While project.model_version is the backend's title, LS averages no prediction into the score
    ordered = ls.tasks(S.project, ordering="tasks:predictions_score")
    assert all(t["predictions_score"] is None for t in ordered)


def test_opening_a_task_predicts_it(ls, service):
    task_id = S.ids[PREDICTED_BY_LS]
    assert not by_task(ls.predictions(S.project)).get(task_id)
    task = ls.call("GET", f"/api/tasks/{task_id}", timeout=200)  # what the editor calls
    (p,) = task["predictions"]
    assert_prediction(p, S.v0)


def test_preannotate_fills_the_missing_tasks_and_a_rerun_has_nothing_left(ls, service):
    report = run_cli(service, "preannotate", "--project", str(S.project), "--only-missing")
    missing = FIRST - PREDICTED_BY_LS - 1
    assert (report["model_version"], report["predicted"], report["up_to_date"], report["failed"]) == \
        (S.v0, missing, FIRST - missing, [])
    stored = by_task(ls.predictions(S.project))
    assert sorted(stored) == S.ids and all(len(ps) == 1 for ps in stored.values())
    for task_id in S.ids[-missing:]:
        assert_prediction(stored[task_id][0], S.v0)
    assert report["project_model_version"] == S.v0
    assert ls.call("GET", f"/api/projects/{S.project}")["model_version"] == S.v0

    again = run_cli(service, "preannotate", "--project", str(S.project))
    assert (again["predicted"], again["up_to_date"]) == (0, FIRST)


def test_tasks_sort_by_prediction_score_least_certain_first(ls, service):
    scores = {task: ps[0]["score"] for task, ps in by_task(ls.predictions(S.project)).items()}
    ordered = ls.tasks(S.project, ordering="tasks:predictions_score")
    assert sorted(t["id"] for t in ordered) == S.ids
    listed = [t["predictions_score"] for t in ordered]
    assert listed == sorted(listed) and listed == [pytest.approx(scores[t["id"]]) for t in ordered]
    S.al_order = [t["id"] for t in ordered]
    low = ls.tasks(S.project, filters=[{"filter": "filter:tasks:predictions_score", "operator": "less",
                                        "type": "Number", "value": 0.6}])
    assert {t["id"] for t in low} == {i for i, score in scores.items() if score < 0.6}


def test_new_tasks_are_preannotated_on_import(ls, service):
    t0 = time.monotonic()
    ls.call("POST", f"/api/projects/{S.project}/import", json=[{"text": t} for t in DATA.texts[FIRST:FIRST + LATER]])
    TIMINGS["import_with_webhook_s"] = round(time.monotonic() - t0, 2)
    new = sorted({t["id"] for t in ls.tasks(S.project)} - set(S.ids))
    assert len(new) == LATER

    def done():
        jobs = service.jobs(S.project)["preannotation"]
        return jobs and jobs[0]["status"] in ("finished", "failed") and jobs[0]
    job = poll("the TASKS_CREATED pre-annotation job", done, timeout=600)
    assert job["status"] == "finished" and job["result"]["predicted"] == LATER, job
    stored = by_task(ls.predictions(S.project))
    for task_id in new:
        (p,) = stored[task_id]
        assert_prediction(p, S.v0)
    S.ids += new


def test_annotations_and_training_from_label_studio_publish_a_new_version(ls, service):
    # the active-learning order: the least certain tasks are annotated first
    chosen = S.al_order[:N_ANNOTATIONS]
    texts = {t["id"]: t["data"]["text"] for t in ls.tasks(S.project)}
    S.slips = set(chosen[-SLIPS:])  # the most certain of the annotated tasks, labelled wrong
    for task_id in chosen:
        label = GOLD[texts[task_id]]
        if task_id in S.slips:
            label = next(other for other in DATA.labels if other != label)
        ls.call("POST", f"/api/tasks/{task_id}/annotations", json={"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]})
    assert ls.call("GET", f"/api/projects/{S.project}")["num_tasks_with_annotations"] == N_ANNOTATIONS

    t0 = time.monotonic()
    ls.call("POST", f"/api/ml/{S.ml}/train", json={})  # the "Start training" button → START_TRAINING

    def finished():
        jobs = [j for j in service.jobs(S.project)["jobs"] if j["reason"] == "START_TRAINING"]
        return jobs and jobs[0]["status"] in ("finished", "failed") and jobs[0]
    job = poll("the refinement job", finished, timeout=1500, every=5)
    TIMINGS["refinement_job_s"] = round(time.monotonic() - t0, 1)
    assert job["status"] == "finished", job
    result = job["result"]
    decision = result["controls"]["label"]
    TIMINGS["refinement_decision"] = {"best": decision.get("best"), "p_value": decision.get("p_value"),
                                      "macro_f1": [decision.get("current", {}).get("macro_f1"),
                                                   decision.get("best_metrics", {}).get("macro_f1")]}
    assert result["reconcile"] == {"status": "ok", "before": N_ANNOTATIONS, "after": N_ANNOTATIONS, "changed": 0}
    assert result["gt_count"] == N_ANNOTATIONS
    assert result["status"] == "published", json.dumps(result["controls"], indent=1)
    S.v1 = result["model_version"]
    assert S.v1.endswith(".v1") and S.v1.rsplit(".", 1)[0] == S.v0.rsplit(".", 1)[0]
    assert ls.call("GET", f"/api/ml/{S.ml}")["model_version"] == S.v1  # LS asked /setup again
    TIMINGS["model_versions"] = [S.v0, S.v1]


def test_the_labels_most_likely_wrong_are_shown_to_reviewers_in_label_studio(ls, service):
    # (how well labels are caught is tested in tests/integration/test_refinement_job.py; here a few
    # planted slips among 40 labels are enough for the model to disagree with)
    ranked = service.http.get(f"{service.url}/projects/{S.project}/suspects?limit=500", timeout=10).json()
    rows = ranked["controls"]["label"]["suspects"]
    assert rows and ranked["model_version"] == S.v1
    assert S.slips & {r["task_id"] for r in rows}, rows
    (job,) = [j for j in service.jobs(S.project)["jobs"] if j["reason"] == "START_TRAINING"]
    assert job["result"]["suspects_in_label_studio"] == {"written": len(rows), "deleted": 0}
    # one prediction per suspect under its own model version: the label the model suggests, and
    # Label Studio's `mislabeling` field the chance the given one is wrong
    shown = {p["task"]: p for p in ls.predictions(S.project) if p["model_version"] == SUSPECTS_VERSION}
    assert set(shown) == {r["task_id"] for r in rows}
    for row in rows:
        p = shown[row["task_id"]]
        (region,) = p["result"]
        assert region["value"]["choices"] == row["suggested"] != row["given"]
        assert p["mislabeling"] == pytest.approx(1 - row["p_given"], abs=1e-4)
        assert p["score"] == pytest.approx(row["p_suggested"], abs=1e-4)
    first = rows[0]["task_id"]
    annotations = ls.call("GET", f"/api/tasks/{first}/annotations")
    assert [a["result"][0]["value"]["choices"] for a in annotations] == [rows[0]["given"]]  # untouched
    # the reviewers' tab in the Data Manager lists exactly those tasks
    (tab,) = [v for v in ls.call("GET", f"/api/dm/views?project={S.project}") if v["data"]["title"] == TAB_TITLE]
    listed = ls.call("GET", f"/api/tasks?project={S.project}&view={tab['id']}&page_size=1000")["tasks"]
    assert {t["id"] for t in listed} == set(shown)


def test_label_studio_fetches_predictions_of_the_new_version(ls, service):
    batch = S.ids[:RETRIEVE_BATCH]
    ls.retrieve_predictions(S.project, batch)
    stored = by_task([p for p in ls.predictions(S.project) if p["model_version"] != SUSPECTS_VERSION])
    for task_id in batch:
        assert [p["model_version"] for p in stored[task_id]] == [S.v0, S.v1]
        assert_prediction(stored[task_id][1], S.v1)
    assert ls.call("GET", f"/api/projects/{S.project}/model-versions")[S.v1] == RETRIEVE_BATCH


def test_preannotate_below_score_resumes_after_an_interruption(ls, service):
    before = by_task([p for p in ls.predictions(S.project) if p["model_version"] != SUSPECTS_VERSION])
    latest = {t: max(ps, key=lambda p: p["id"]) for t, ps in before.items()}
    wanted = {t for t, p in latest.items() if p["model_version"] != S.v1 and p["score"] < BELOW}
    assert len(wanted) >= 12, "too few uncertain tasks to interrupt a run in the middle"

    def count_v1() -> int:
        return sum(p["model_version"] == S.v1 for p in ls.predictions(S.project))
    # batches of 2: a version whose head alone answers predicts at embedding speed, and the run
    # must still be under way once the first 4 tasks are written
    first = service.cli("preannotate", "--project", str(S.project), "--below-score", str(BELOW), "--batch-size", "2")
    poll("the first batches to be written", lambda: first.poll() is not None or count_v1() >= RETRIEVE_BATCH + 4,
         timeout=600, every=0.1)
    assert first.poll() is None, "the run finished before it could be interrupted"
    first.send_signal(signal.SIGINT)  # Ctrl-C
    first.communicate(timeout=60)
    assert first.returncode != 0
    interrupted_at = count_v1() - RETRIEVE_BATCH
    assert 4 <= interrupted_at < len(wanted)

    report = run_cli(service, "preannotate", "--project", str(S.project), "--below-score", str(BELOW))
    assert report["model_version"] == S.v1 and report["failed"] == []
    assert report["predicted"] == len(wanted) - interrupted_at
    after = by_task(ls.predictions(S.project))
    for task_id, ps in after.items():
        v1 = [p for p in ps if p["model_version"] == S.v1]
        assert len(v1) == (1 if task_id in wanted or task_id in S.ids[:RETRIEVE_BATCH] else 0), task_id
        for p in v1:
            assert_prediction(p, S.v1)
    assert ls.call("GET", f"/api/projects/{S.project}")["model_version"] == S.v1

    # the Data Manager now sorts by the new version's scores; tasks without one come last
    ordered = ls.tasks(S.project, ordering="tasks:predictions_score")
    scores = [t["predictions_score"] for t in ordered]
    n = sum(s is not None for s in scores)
    assert n == len(wanted) + RETRIEVE_BATCH
    assert scores[:n] == sorted(scores[:n]) and all(s is None for s in scores[n:])


def test_an_annotation_whose_webhook_was_missed_is_recovered_by_reconciliation(ls, service):
    """What the worker's periodic run (RECONCILE_INTERVAL) does, run here at once."""
    import redis

    from backend.refinement.reconciliation import NEXT_KEY, reconcile_known_projects
    from backend.refinement.scheduler import RefinementScheduler
    from backend.settings import Settings
    from backend.store.ground_truth import GroundTruthStore
    from backend.worker import make_queue

    settings = Settings.from_env(service.env)
    conn = redis.Redis.from_url(service.env["REDIS_URL"])
    assert conn.get(NEXT_KEY), "the worker schedules the periodic reconciliation when it starts"
    store = GroundTruthStore(conn, S.project)
    lost = store.items()[0]
    store.delete_annotations([lost.annotation_id])  # as if its webhook had arrived while we were down
    scheduler = RefinementScheduler(conn, make_queue(settings, conn), settings)
    result = reconcile_known_projects(conn, settings, scheduler)[str(S.project)]
    assert result["status"] == "ok" and result["changed"] == 1 and result["after"] == N_ANNOTATIONS, result
    assert lost.task_id in {gold.task_id for gold in store.items()}
    assert result["job"]  # a refinement job was queued for the project that changed
