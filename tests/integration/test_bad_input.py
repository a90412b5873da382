"""Bad input over HTTP (Flask test client, scripted engine, real Redis): a 4xx whose JSON body names
the field, never a 500, and a rejected webhook or /train leaves Redis exactly as it was.

The table below is every 500 found on main when this was written; the property tests then throw
generated bodies (captured fixtures with values replaced by any JSON) at the same routes."""
import copy
import json
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from tests.conftest import load_fixture
from tests.strategies import PROPERTY_SETTINGS, deep, dumps, json_values, label_configs, mutated

CREATED = load_fixture("webhook-annotation-created.json")
TRAIN = load_fixture("train.json")
PREDICT = load_fixture("predict-choices-single.json")
SETUP = load_fixture("setup.json")
DELETED = load_fixture("webhook-annotations-deleted.json")
TASKS_CREATED = load_fixture("webhook-tasks-created.json")
WEBHOOKS = [CREATED, load_fixture("webhook-annotation-updated.json"), DELETED, TASKS_CREATED,
            load_fixture("webhook-start-training.json"), load_fixture("webhook-project-updated.json")]
TEXT = '<Text name="text" value="$text"/>'
TWO = '<Choice value="x"/><Choice value="y"/>'
TO_A_CONTROL = f'<View>{TEXT}<Choices name="a" toName="text">{TWO}</Choices><Choices name="b" toName="a">{TWO}</Choices></View>'


@pytest.fixture
def app(tmp_path, redis_conn, redis_url):
    settings = Settings.from_env({
        "MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "RQ_QUEUE_NAME": f"q-{uuid.uuid4().hex[:6]}",
        "PREANNOTATE_ON_IMPORT": "true", "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "unused",
    }, refine_min_new=1000, refine_delay_s=3600)
    return create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)


def _changed(fixture, change):
    body = copy.deepcopy(fixture)
    change(body)
    return body


def _region(body):
    return body["annotation"]["result"][0]


def _train_region(body):
    return body["annotations"][0]["annotations"][0]["result"][0]


def _post(client, path, body):
    return client.post(path, data=dumps(body), content_type="application/json")


def _snapshot(conn) -> dict:
    """Every key of the test db and its serialized value: a rejected request must change none."""
    return {k: conn.dump(k) for k in sorted(conn.keys("*"))}


def _assert_named_4xx(r, field=None):
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.json["error"] and r.json["message"] and r.json["field"], r.json
    if field is not None:
        assert r.json["field"] == field, r.json


# Each of these answered 500 on main (the cause in the comment).
REPRODUCED_500S = [
    # wrong JSON types inside an annotation's result (AttributeError / TypeError)
    ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(result=5)), "annotation.result"),
    ("/webhook", _changed(CREATED, lambda b: _region(b).update(value=5)), "annotation.result[0].value"),
    ("/webhook", _changed(CREATED, lambda b: _region(b).update(value=["Negative"])), "annotation.result[0].value"),
    ("/webhook", _changed(CREATED, lambda b: _region(b).update(value={"choices": [["Negative"]]})),
     "annotation.result[0].value.choices[0]"),
    ("/webhook", _changed(CREATED, lambda b: _region(b).update(value={"choices": [{"a": 1}]})),
     "annotation.result[0].value.choices[0]"),
    ("/webhook", _changed(CREATED, lambda b: _region(b).update(from_name=["sentiment"])),
     "annotation.result[0].from_name"),
    ("/train", _changed(TRAIN, lambda b: _train_region(b).update(value=[1])),
     "annotations[0].annotations[0].result[0].value"),
    ("/train", _changed(TRAIN, lambda b: _train_region(b).update(value={"choices": [["Neutral"]]})),
     "annotations[0].annotations[0].result[0].value.choices[0]"),
    ("/train", _changed(TRAIN, lambda b: b["annotations"][0].update(annotations=5)), "annotations[0].annotations"),
    # non-finite ids (OverflowError in int())
    ("/webhook", _changed(CREATED, lambda b: b["task"].update(id=float("inf"))), "task.id"),
    ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(id=float("inf"))), "annotation.id"),
    # very deep nesting (RecursionError in the JSON parser)
    ("/webhook", {"action": "ANNOTATION_CREATED", "annotation": "<<nested 100000>>"}, "body"),
    ("/predict", _changed(PREDICT, lambda b: b["tasks"][0]["data"].update(extra="<<nested 5000>>")), "body"),
    ("/setup", "<<nested 3000>>", "body"),
    ("/train", _changed(TRAIN, lambda b: b.update(params="<<nested 2000>>")), "body"),
    # thousands of digits in `project` (ValueError: int() string conversion limit)
    ("/predict", _changed(PREDICT, lambda b: b.update(project="9" * 5000 + ".1")), "project"),
    ("/setup", _changed(SETUP, lambda b: b.update(project="9" * 5000)), "project"),
    # lone surrogates (UnicodeEncodeError when Redis encodes them)
    ("/webhook", _changed(CREATED, lambda b: b["task"]["data"].update(text="bad \ud800 text")), "task.data.text"),
    ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(updated_at="\ud800")), "annotation.updated_at"),
    ("/webhook", _changed(CREATED, lambda b: b["project"].update(
        label_config=CREATED["project"]["label_config"].replace("Negative", "Neg\udc00"))), "project.label_config"),
    # toName naming a control, not an object tag (a bare Exception from the SDK)
    ("/setup", {"project": "1.1", "schema": TO_A_CONTROL}, "label_config"),
    ("/predict", _changed(PREDICT, lambda b: b.update(label_config=TO_A_CONTROL)), "label_config"),
    ("/webhook", _changed(CREATED, lambda b: b["project"].update(label_config=TO_A_CONTROL)), "project.label_config"),
]


@pytest.mark.parametrize("path, body, field", REPRODUCED_500S)
def test_each_500_found_on_main_is_now_a_named_400(app, redis_conn, path, body, field):
    before = _snapshot(redis_conn)
    r = _post(app.test_client(), path, body)
    _assert_named_4xx(r, field)
    assert _snapshot(redis_conn) == before


@pytest.mark.parametrize(
    "path, body, field",
    [
        # accepted on main, as a wrong id or silently wrong data
        ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(id=10**30)), "annotation.id"),
        ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(id=True)), "annotation.id"),
        ("/webhook", _changed(CREATED, lambda b: b["task"].update(id=10**15)), "task.id"),
        ("/webhook", _changed(CREATED, lambda b: b["task"]["data"].update(text={"a": 1})), "task.data.text"),
        ("/webhook", _changed(CREATED, lambda b: b["annotation"].update(result=[5])), "annotation.result[0]"),
        ("/webhook", {**DELETED, "annotations": [{"id": 10**30}]}, "annotations[0].id"),
        ("/webhook", {**DELETED, "annotations": [{"id": float("nan")}]}, "annotations[0].id"),
        ("/webhook", {**TASKS_CREATED, "tasks": [{"id": 10**30}]}, "tasks[0].id"),
        ("/webhook", {**TASKS_CREATED, "tasks": [{"id": -1}]}, "tasks[0].id"),
        ("/webhook", _changed(CREATED, lambda b: b["project"].update(id=True)), "project.id"),
        ("/webhook", _changed(CREATED, lambda b: b["project"].update(id=-1)), "project.id"),
        ("/predict", _changed(PREDICT, lambda b: b.update(project="١٢.1")), "project"),  # Arabic-Indic digits
        ("/predict", _changed(PREDICT, lambda b: b["tasks"][0]["data"].update(text="a\ud800b")), "tasks[0].data.text"),
        ("/predict", _changed(PREDICT, lambda b: b.update(label_config=b["label_config"] + "\ud800")), "label_config"),
        ("/setup", _changed(SETUP, lambda b: b.update(project="²")), "project"),
        ("/train", _changed(TRAIN, lambda b: b.update(project="١٢")), "project"),
        ("/train", _changed(TRAIN, lambda b: b["annotations"][0].update(annotations=[5])), "annotations[0].annotations[0]"),
        ("/train", _changed(TRAIN, lambda b: b.update(label_config=5)), "label_config"),
    ],
)
def test_other_bad_values_are_named_400s_too(app, redis_conn, path, body, field):
    before = _snapshot(redis_conn)
    _assert_named_4xx(_post(app.test_client(), path, body), field)
    assert _snapshot(redis_conn) == before


@pytest.mark.parametrize("path", ["/jobs", "/versions", "/versions/x.v1/report"])
@pytest.mark.parametrize("project", [quote("١٢"), quote("²"), "9" * 5000, "-1", "1e3", "%ED%A0%80", "%FF"])
def test_project_query_parameters_take_ascii_ids_only(app, path, project):
    """'²'.isdigit() is True and int('²') fails; a 5000-digit id fails int() too: both were 500s.
    ('١٢' was read as project 12.) The last two are not UTF-8 at all."""
    _assert_named_4xx(app.test_client().get(f"{path}?project={project}"), "project")


def test_a_rejected_event_keeps_the_stored_config_and_ground_truth(app, redis_conn):
    """On main the label config was stored before the annotation was read, so a bad annotation
    still replaced the project's config (and a bad config was stored for every later job)."""
    client = app.test_client()
    assert _post(client, "/webhook", CREATED).json["stored"] == 1
    store = GroundTruthStore(redis_conn, 1)
    config, items = store.label_config(), store.items()
    new_config = CREATED["project"]["label_config"].replace("Neutral", "Mixed")
    bad = _changed(CREATED, lambda b: (b["project"].update(label_config=new_config), _region(b).update(value=5)))
    _assert_named_4xx(_post(client, "/webhook", bad), "annotation.result[0].value")
    assert (store.label_config(), store.items()) == (config, items)


def test_train_stores_all_or_nothing(app, redis_conn):
    """One bad annotation among good ones: on main the good ones before it were stored."""
    client = app.test_client()
    good = copy.deepcopy(TRAIN["annotations"][0])
    bad = _changed(good, lambda t: (t.update(id=99), t["annotations"][0].update(id=98, result=[{"from_name": "sentiment", "value": 7}])))
    r = _post(client, "/train", {**TRAIN, "annotations": [good, bad]})
    _assert_named_4xx(r, "annotations[1].annotations[0].result[0].value")
    assert GroundTruthStore(redis_conn, 1).count() == 0 and GroundTruthStore(redis_conn, 1).label_config() is None
    r = _post(client, "/train", {**TRAIN, "annotations": [good]})
    assert r.status_code == 200 and r.json["stored"] == 1


_replacement = st.one_of(json_values, json_values, deep, label_configs())
_webhooks = st.one_of(
    *[mutated(w, focus=(("action",), ("annotation",), ("task",), ("annotations",), ("tasks",), ("project", "id"),
                        ("project", "label_config")), values=_replacement) for w in WEBHOOKS],
    json_values,
)
_predicts = st.one_of(
    mutated(PREDICT, focus=(("tasks",), ("label_config",), ("project",)), values=_replacement),
    mutated(load_fixture("predict-choices-multi.json"), focus=(("tasks",), ("label_config",)), values=_replacement),
    json_values,
)


@settings(**PROPERTY_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_webhooks)
def test_any_webhook_body_is_answered_below_500_and_a_rejected_one_stores_nothing(app, redis_conn, body):
    """Each example starts from a project that already has a config and a gold item, so a rejected
    webhook that stored or deleted anything, anywhere in Redis, is caught."""
    redis_conn.flushdb()
    client = app.test_client()
    assert _post(client, "/webhook", CREATED).json["stored"] == 1
    before = _snapshot(redis_conn)
    r = _post(client, "/webhook", body)
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        _assert_named_4xx(r)
        assert _snapshot(redis_conn) == before
        assert len(GroundTruthStore(redis_conn, 1).items()) == 1


@settings(**PROPERTY_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_predicts)
def test_any_predict_body_is_answered_below_500(app, body):
    r = _post(app.test_client(), "/predict", body)
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        _assert_named_4xx(r)
    else:
        assert len(r.json["results"]) == len(body["tasks"])
        json.dumps(r.json, allow_nan=False)
