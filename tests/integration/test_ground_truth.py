"""Webhook → ground truth in a real Redis: newest wins, idempotent, cancelled and deleted handled."""
import threading

import pytest

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.evaluation.datasets import load_dataset
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from tests.conftest import DATASETS, load_fixture
from tests.ls_payloads import annotation_event

DATA = load_dataset(DATASETS / "sentence_polarity" / "test.jsonl", limit=60)


@pytest.fixture
def app(tmp_path, redis_conn, redis_url):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url}, refine_min_new=1000,
                                 refine_delay_s=3600)
    return create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)


def test_captured_annotation_webhook_is_stored(app, redis_conn):
    body = load_fixture("webhook-annotation-created.json")
    r = app.test_client().post("/webhook", json=body)
    assert r.status_code == 200 and r.json["stored"] == 1
    (gold,) = GroundTruthStore(redis_conn, 1).items()
    assert gold.labels == {"sentiment": ["Negative"]}
    assert gold.texts == {"text": "Terrible service, never again"}
    assert r.json["job"]["status"] == "scheduled"  # debounced, not run inline


def test_a_rating_annotation_is_stored_as_its_star(app, redis_conn):
    body = load_fixture("webhook-annotation-created.json")
    body["project"]["label_config"] = ('<View><Text name="text" value="$text"/>'
                                       '<Rating name="stars" toName="text" maxRating="5"/></View>')
    body["annotation"]["result"] = [{"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 2}}]
    r = app.test_client().post("/webhook", json=body)
    assert r.status_code == 200 and r.json["stored"] == 1
    (gold,) = GroundTruthStore(redis_conn, body["project"]["id"]).items()
    assert gold.labels == {"stars": ["2"]}


def test_duplicate_delivery_is_stored_once(app, redis_conn):
    client = app.test_client()
    body = annotation_event(DATA, 0, project=7)
    assert client.post("/webhook", json=body).json["stored"] == 1
    assert client.post("/webhook", json=body).json["stored"] == 0
    assert GroundTruthStore(redis_conn, 7).count() == 1


def test_newest_annotation_wins_whatever_the_arrival_order(app, redis_conn):
    client = app.test_client()
    new = annotation_event(DATA, 0, project=7, annotation_id=2, label="negative", updated_at="2026-11-24T00:00:00Z")
    old = annotation_event(DATA, 0, project=7, annotation_id=1, label="positive", updated_at="2026-11-23T00:00:00Z")
    client.post("/webhook", json=new)
    assert client.post("/webhook", json=old).json["stored"] == 0
    (gold,) = GroundTruthStore(redis_conn, 7).items()
    assert (gold.annotation_id, gold.labels["label"]) == (2, ["negative"])


def test_update_replaces_and_delete_removes(app, redis_conn):
    client = app.test_client()
    client.post("/webhook", json=annotation_event(DATA, 0, project=7, label="positive"))
    update = annotation_event(DATA, 0, project=7, label="negative", updated_at="2026-11-25T00:00:00Z",
                              action="ANNOTATION_UPDATED")
    assert client.post("/webhook", json=update).json["stored"] == 1
    assert GroundTruthStore(redis_conn, 7).items()[0].labels["label"] == ["negative"]
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 5000}], "project": {"id": 7}}
    assert client.post("/webhook", json=deleted).json["removed"] == 1
    assert GroundTruthStore(redis_conn, 7).count() == 0


def test_cancelled_annotation_is_not_ground_truth(app, redis_conn):
    client = app.test_client()
    client.post("/webhook", json=annotation_event(DATA, 0, project=7))
    skipped = annotation_event(DATA, 0, project=7, cancelled=True, updated_at="2026-11-25T00:00:00Z",
                               action="ANNOTATION_UPDATED")
    assert client.post("/webhook", json=skipped).json["removed"] == 1
    assert GroundTruthStore(redis_conn, 7).count() == 0


def test_concurrent_deliveries_all_land(app, redis_conn):
    client_errors = []

    def send(chunk):
        client = app.test_client()
        for i in chunk:
            r = client.post("/webhook", json=annotation_event(DATA, i, project=8))
            if r.status_code != 200:
                client_errors.append(r.json)

    threads = [threading.Thread(target=send, args=(range(k, 60, 6),)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not client_errors
    assert GroundTruthStore(redis_conn, 8).count() == 60


def test_start_training_queues_a_job_now(app, redis_conn):
    r = app.test_client().post("/webhook", json=load_fixture("webhook-start-training.json"))
    assert r.status_code == 200 and r.json["job"]["status"] == "queued"
    jobs = app.test_client().get("/jobs?project=1").json["jobs"]
    assert jobs[0]["status"] == "queued" and jobs[0]["reason"] == "START_TRAINING"


def test_webhook_secret_path(tmp_path, redis_conn, redis_url):
    secret = "Tq3v_9xZ-Lr2Wm8kPb4N"
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "WEBHOOK_SECRET": secret})
    client = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn).test_client()
    body = load_fixture("webhook-annotation-created.json")
    r = client.post("/webhook", json=body)
    assert r.status_code == 401 and r.json["field"] == "path"
    assert client.post("/wrong/webhook", json=body).status_code in (401, 404)
    assert client.post(f"/{secret[:-1]}/webhook", json=body).status_code in (401, 404)
    assert client.post(f"/{secret}/webhook", json=body).status_code == 200
    assert client.get(f"/{secret}/health").status_code == 200
    assert GroundTruthStore(redis_conn, 1).count() == 1


def test_a_bulk_delete_runs_in_chunks_and_removes_every_item(redis_conn):
    from backend.store.ground_truth import DELETE_CHUNK, GoldItem

    store = GroundTruthStore(redis_conn, 77)
    n = 2 * DELETE_CHUNK + 500
    for i in range(1, n + 1):
        store.upsert(GoldItem(i, {"text": f"t{i}"}, {"label": ["a"]}, 10_000 + i, "2026-01-01"))
    keep = GoldItem(n + 1, {"text": "kept"}, {"label": ["a"]}, 10_000 + n + 1, "2026-01-01")
    store.upsert(keep)
    assert store.delete_annotations([10_000 + i for i in range(1, n + 1)]) == n
    assert store.items() == [keep]


def test_only_an_edit_of_what_is_served_is_a_new_version_lineage(app, redis_conn, caplog):
    body = load_fixture("webhook-project-updated.json")
    config = body["project"]["label_config"]
    client = app.test_client()

    def update(label_config: str) -> list[str]:
        caplog.clear()
        body["project"]["label_config"] = label_config
        with caplog.at_level("INFO", logger="backend.api.learning_events"):
            assert client.post("/webhook", json=body).status_code == 200
        assert GroundTruthStore(redis_conn, body["project"]["id"]).label_config() == label_config
        return [r.getMessage() for r in caplog.records if "new version lineage" in r.getMessage()]

    assert update(config) == []  # the first config known
    restyled = config.replace("<View>", '<View><Header value="Tone"/><View style="padding: 4px">', 1) + "</View>"
    assert update(restyled) == []
    assert update(restyled.replace('"Neutral"', '"Mixed"')) == ["project 1: label config changed, a new version lineage starts"]
