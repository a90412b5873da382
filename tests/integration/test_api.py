"""HTTP contract through the Flask app (scripted engine: these test the protocol, not the model)."""
import base64
import threading

import pytest

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.settings import Settings
from tests.conftest import load_fixture

PASS = "a-password-of-24-chars!!"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"ls:{PASS}".encode()).decode()}


@pytest.fixture
def make_client(tmp_path, redis_conn, redis_url):
    def make(engine_factory=ScriptedEngine, **overrides):
        settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url}, **overrides)
        return create_app(settings, engine_factory=engine_factory, redis_conn=redis_conn).test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def test_health_and_index_answer_without_the_model(make_client):
    gate = threading.Event()
    client = make_client(engine_factory=lambda: gate.wait(10) and ScriptedEngine())
    for path in ("/health", "/"):
        r = client.get(path)
        assert r.status_code == 200 and r.json["status"] == "UP"
        assert r.json["model_state"] == "loading"
    gate.set()


def test_setup_returns_the_model_version(client):
    r = client.post("/setup", json=load_fixture("setup.json"))
    assert r.status_code == 200
    assert r.json["model_version"].endswith(".v0")
    assert r.json["controls"] == ["sentiment"]


def test_predict_answers_one_result_per_task_in_order(client):
    body = load_fixture("predict-choices-single.json")
    r = client.post("/predict", json=body)
    assert r.status_code == 200
    assert len(r.json["results"]) == len(body["tasks"])
    for item in r.json["results"]:
        region = item["result"][0]
        assert region["value"]["choices"][0] in ("Positive", "Negative", "Neutral")
        assert 0 <= item["score"] <= 1


def test_predict_while_the_model_loads_is_503_not_an_empty_result(make_client):
    gate = threading.Event()
    client = make_client(engine_factory=lambda: gate.wait(10) and ScriptedEngine(), llm_load_timeout_s=0.2)
    r = client.post("/predict", json=load_fixture("predict-choices-single.json"))
    gate.set()
    assert r.status_code == 503
    assert r.json["error"] == "engine_unavailable"


def test_a_model_that_fails_to_load_is_reported(make_client):
    def broken():
        raise RuntimeError("no such gguf")

    client = make_client(engine_factory=broken)
    r = client.post("/predict", json=load_fixture("predict-choices-single.json"))
    assert r.status_code == 503 and "no such gguf" in r.json["message"]
    assert client.get("/health").json["model_state"] == "failed"


def _predict_body(**changes):
    body = load_fixture("predict-choices-single.json")
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "kwargs, status, field",
    [
        ({"data": "not json", "content_type": "application/json"}, 400, "body"),
        ({"json": [1, 2]}, 400, "body"),
        ({"json": _predict_body(tasks=None)}, 400, "tasks"),
        ({"json": _predict_body(tasks=[])}, 400, "tasks"),
        ({"json": _predict_body(tasks=[{"id": 1, "data": {"title": "x"}}])}, 400, "tasks[0].data.text"),
        ({"json": _predict_body(tasks=[{"id": 1, "data": {"text": ""}}])}, 400, "tasks[0].data.text"),
        ({"json": _predict_body(label_config="<View><oops")}, 400, "label_config"),
        ({"json": _predict_body(label_config=None)}, 400, "label_config"),
        ({"json": _predict_body(project="abc")}, 400, "project"),
        ({"json": _predict_body(label_config='<View><Image name="i" value="$img"/><RectangleLabels name="r" '
                                              'toName="i"><Label value="cat"/></RectangleLabels></View>')},
         400, "label_config"),
    ],
)
def test_bad_predict_input_is_a_4xx_naming_the_field(client, kwargs, status, field):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status
    assert r.json["field"] == field
    assert r.json["message"]


def test_too_many_tasks_is_413(make_client):
    client = make_client(max_tasks_per_request=1)
    r = client.post("/predict", json=load_fixture("predict-choices-single.json"))
    assert r.status_code == 413 and r.json["field"] == "tasks"


def test_setup_with_invalid_schema_is_400(client):
    r = client.post("/setup", json={"project": "1.1", "schema": "<View>"})
    assert r.status_code == 400 and r.json["field"] == "label_config"
    r = client.post("/setup", json={"project": "1.1"})
    assert r.status_code == 400 and r.json["field"] == "schema"


def test_unknown_route_and_method_are_json_4xx(client):
    assert client.get("/nope").status_code == 404
    r = client.get("/predict")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"


def test_basic_auth_protects_all_but_health_and_webhook(make_client):
    client = make_client(basic_auth_user="ls", basic_auth_pass=PASS)
    assert client.get("/health").status_code == 200
    body = load_fixture("predict-choices-single.json")
    r = client.post("/predict", json=body)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    assert client.post("/predict", json=body, headers=bad).status_code == 401
    assert client.post("/predict", json=body, headers=AUTH).status_code == 200
    assert client.post("/setup", json=load_fixture("setup.json")).status_code == 401
    assert client.get("/versions").status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200
    # Label Studio sends event webhooks without credentials
    assert client.post("/webhook", json=load_fixture("webhook-annotation-created.json")).status_code == 200


@pytest.mark.parametrize(
    "fixture",
    [
        "webhook-annotation-created.json",
        "webhook-annotation-updated.json",
        "webhook-annotations-deleted.json",
        "webhook-start-training.json",
        "webhook-project-updated.json",
    ],
)
def test_learning_webhooks_are_accepted(client, fixture):
    r = client.post("/webhook", json=load_fixture(fixture))
    assert r.status_code == 200 and r.json["status"] == "accepted", r.json
    assert isinstance(r.json["project"], int)


def test_other_webhooks_are_acknowledged_and_ignored(client):
    r = client.post("/webhook", json=load_fixture("webhook-tasks-created.json"))
    assert r.status_code == 200 and r.json["status"] == "ignored"


def test_malformed_webhooks_are_400(client):
    assert client.post("/webhook", json={"project": {"id": 1}}).json["field"] == "action"
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert r.status_code == 400 and r.json["field"] == "annotation"


def test_legacy_train_is_validated_and_accepted(client):
    r = client.post("/train", json=load_fixture("train.json"))
    assert r.status_code == 200 and r.json["status"] == "accepted"
    assert r.json["stored"] >= 1
    assert client.post("/train", json={"project": "1.2"}).json["field"] == "annotations"


def test_versions_and_metrics(client):
    client.post("/predict", json=load_fixture("predict-choices-single.json"))
    versions = client.get("/versions").json["versions"]
    assert versions and versions[0].endswith(".v0")
    assert client.get("/versions?project=x").status_code == 400
    text = client.get("/metrics").get_data(as_text=True)
    assert "llmlb_tasks_predicted_total 2" in text
    assert 'llmlb_http_requests_total{endpoint="ml.predict",status="200"} 1' in text


# What Label Studio 1.23.2 sends, from the captured headers: its ML connector (/setup, /predict,
# START_TRAINING, legacy /train: requests' json=) and its webhook client (event webhooks).
def _captured_headers(name: str) -> dict:
    headers = load_fixture(name)["headers"]
    return {k: v for k, v in headers.items() if k not in ("Host", "Content-Length", "Authorization")}


@pytest.mark.parametrize(
    "route, fixture, headers",
    [
        ("/setup", "setup.json", "headers-ml-request.json"),
        ("/predict", "predict-choices-single.json", "headers-ml-request.json"),
        ("/predict", "predict-choices-single.json", "headers-ml-request-basic-auth.json"),
        ("/webhook", "webhook-start-training.json", "headers-start-training-basic-auth.json"),
        ("/webhook", "webhook-annotation-created.json", "headers-webhook.json"),
        ("/webhook", "webhook-annotation-created.json", "headers-webhook-basic-auth-backend.json"),
        ("/train", "train.json", "headers-ml-request.json"),
    ],
)
def test_label_studio_requests_with_their_captured_headers_are_accepted(client, route, fixture, headers):
    import json

    sent = _captured_headers(headers)
    assert sent["Content-Type"] == "application/json"
    r = client.post(route, data=json.dumps(load_fixture(fixture)), headers=sent)
    assert r.status_code == 200, r.json


@pytest.mark.parametrize("route", ["/setup", "/predict", "/webhook", "/train"])
@pytest.mark.parametrize(
    "content_type",
    # the three a browser may post to any origin without a CORS preflight, and none at all
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     None],
)
def test_a_body_not_declared_as_json_is_415_naming_the_content_type(client, route, content_type):
    import json

    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(route, data=json.dumps(load_fixture("webhook-annotation-created.json")), headers=headers)
    assert r.status_code == 415
    assert r.json["error"] == "unsupported_media_type" and r.json["field"] == "Content-Type"
    assert "application/json" in r.json["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON",
                                          "application/vnd.label-studio+json"])
def test_json_with_a_charset_or_a_json_suffix_type_is_accepted(client, content_type):
    import json

    r = client.post("/webhook", data=json.dumps(load_fixture("webhook-annotation-created.json")),
                    headers={"Content-Type": content_type})
    assert r.status_code == 200 and r.json["status"] == "accepted"


def _padded(fixture: str, size: int) -> bytes:
    """A captured body with an extra field that brings it to `size` bytes (Label Studio keeps unknown keys)."""
    import json

    body = load_fixture(fixture)
    body["padding"] = ""
    short = len(json.dumps(body).encode())
    body["padding"] = "x" * (size - short)
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_the_public_webhook_takes_at_most_1_mib_while_predict_keeps_64_mib(client):
    json_type = {"Content-Type": "application/json"}
    r = client.post("/webhook", data=_padded("webhook-annotation-created.json", 1024 * 1024), headers=json_type)
    assert r.status_code == 200
    r = client.post("/webhook", data=_padded("webhook-annotation-created.json", 1024 * 1024 + 1), headers=json_type)
    assert r.status_code == 413
    assert r.json["error"] == "payload_too_large" and r.json["field"] == "body"
    assert "1048576 bytes" in r.json["message"]
    r = client.post("/predict", data=_padded("predict-choices-single.json", 2 * 1024 * 1024), headers=json_type)
    assert r.status_code == 200 and len(r.json["results"]) == 2
    r = client.post("/predict", data=b"{" + b" " * (64 * 1024 * 1024), headers=json_type)
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"


def test_webhook_max_bytes_raises_the_webhook_limit(make_client):
    client = make_client(webhook_max_bytes=4 * 1024 * 1024)
    data = _padded("webhook-tasks-created.json", 3 * 1024 * 1024)
    r = client.post("/webhook", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 200



def test_an_interactive_request_leaves_out_what_the_annotator_answered(client):
    body = load_fixture("predict-interactive.json")  # the annotator has chosen a sentiment in the editor
    r = client.post("/predict", json=body)
    assert r.status_code == 200
    (prediction,) = r.json["results"]
    assert [x for x in prediction["result"] if x["from_name"] == "sentiment"] == []
    batch = dict(body, params={"context": None})
    (again,) = client.post("/predict", json=batch).json["results"]
    assert [x["from_name"] for x in again["result"]] == ["sentiment"]
    bad = client.post("/predict", json=dict(body, params={"context": {"result": "x"}}))
    assert bad.status_code == 400 and bad.json["field"] == "params.context.result"
