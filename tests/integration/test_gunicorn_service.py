"""Real HTTP to a real gunicorn serving the real embedded model, with Label Studio's captured bodies."""
import threading

import pytest
import requests

from tests.conftest import load_fixture

pytestmark = [pytest.mark.service, pytest.mark.model]

AUTH = ("ls-user", "ls-pass-0123456789")


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1]})


def test_label_studio_connect_sequence(server):
    assert requests.get(server.url + "/health", timeout=1).json()["status"] == "UP"
    r = requests.post(server.url + "/setup", json=load_fixture("setup-basic-auth-extra-params.json"), auth=AUTH, timeout=3)
    assert r.status_code == 200
    version = r.json()["model_version"]
    body = load_fixture("predict-choices-single.json")
    r = requests.post(server.url + "/predict", json=body, auth=AUTH, timeout=100)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == len(body["tasks"])
    for item in results:
        assert item["model_version"] == version
        assert item["result"][0]["value"]["choices"][0] in {"Positive", "Negative", "Neutral"}
        assert 0 < item["score"] <= 1


@pytest.mark.parametrize(
    "fixture", ["predict-interactive.json", "predict-choices-single-open-task.json", "predict-choices-multi.json"]
)
def test_other_captured_predict_bodies(server, fixture):
    body = load_fixture(fixture)
    r = requests.post(server.url + "/predict", json=body, auth=AUTH, timeout=100)
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == len(body["tasks"])


def test_auth_is_enforced_over_http_but_webhooks_pass(server):
    body = load_fixture("predict-choices-single.json")
    assert requests.post(server.url + "/predict", json=body, timeout=10).status_code == 401
    assert requests.post(server.url + "/predict", json=body, auth=("ls-user", "x"), timeout=10).status_code == 401
    r = requests.post(server.url + "/webhook", json=load_fixture("webhook-annotation-created.json"), timeout=1)
    assert r.status_code == 200
    json_type = {"Content-Type": "application/json"}
    r = requests.post(server.url + "/webhook", data=b"{not json", headers=json_type, timeout=1)
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = requests.post(server.url + "/webhook", data=b"{not json", timeout=1)
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"


def test_health_answers_while_a_batch_is_being_predicted(server):
    body = load_fixture("predict-choices-single.json")
    task = body["tasks"][0]
    body["tasks"] = [dict(task, id=i, data={"text": f"review number {i}: it was fine, I guess"}) for i in range(40)]
    done = threading.Event()
    outcome = {}

    def run():
        outcome["r"] = requests.post(server.url + "/predict", json=body, auth=AUTH, timeout=100)
        done.set()

    threading.Thread(target=run).start()
    healths = []
    while not done.is_set() and len(healths) < 5:
        healths.append(requests.get(server.url + "/health", timeout=1).status_code)
    done.wait(100)
    assert healths and all(code == 200 for code in healths)
    assert outcome["r"].status_code == 200
    assert len(outcome["r"].json()["results"]) == 40


def test_a_batch_too_slow_for_label_studio_is_answered_with_one_result(server, server_factory):
    """Given one result for many tasks, Label Studio asks for every task on its own (captured in
    docs/label-studio-ml-protocol.md), instead of timing out on the batch and storing nothing."""
    body = load_fixture("predict-choices-single.json")
    task = body["tasks"][0]
    body["tasks"] = [dict(task, id=i, data={"text": f"review {i}: not bad at all"}) for i in range(4)]
    strict = server_factory({"PREDICT_BATCH_SECONDS": "0.001"})
    r = requests.post(strict.url + "/predict", json=body, timeout=100)
    assert r.status_code == 200
    (only,) = r.json()["results"]
    alone = requests.post(strict.url + "/predict", json=dict(body, tasks=body["tasks"][:1]), timeout=100).json()
    assert only == alone["results"][0]
    per_task = [requests.post(strict.url + "/predict", json=dict(body, tasks=[t]), timeout=100).json()["results"]
                for t in body["tasks"]]
    assert all(len(results) == 1 for results in per_task)
    whole = requests.post(server.url + "/predict", json=body, auth=AUTH, timeout=100).json()["results"]
    assert whole == [results[0] for results in per_task]  # same predictions as the default server's batch
