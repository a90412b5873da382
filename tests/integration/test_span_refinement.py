"""Learning for entity spans on real parts: span annotations → webhook → Redis ground truth → a
refinement job on the real embedded model → a version whose span prompt shows annotated texts,
served by /predict."""
import copy

import pytest

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.refinement.job import run_refinement
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from tests.conftest import load_fixture

pytestmark = pytest.mark.model

PROJECT = 61
N_TEXTS = 8  # MIN_ITEMS: a pattern learnt from 8 texts is already a significant difference
CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ticket" toName="text">'
          '<Label value="Ticket"/></Labels></View>')
NAMES = ["Dana", "Omar", "Lena", "Raj", "Mia", "Tom", "Ines", "Kofi", "Sara", "Ivan", "Yuki", "Noor", "Paul", "Eva"]
DAYS = ["Monday", "Tuesday", "Friday", "noon", "tonight", "Sunday", "lunch"]


def _text(i: int) -> tuple[str, str]:
    code = f"{'QXZRWK'[i % 6]}{'TMPV'[i % 4]}-{4000 + 37 * i}"
    forms = [f"Please escalate ticket {code} to {NAMES[i % 14]} before {DAYS[i % 7]}.",
             f"{NAMES[i % 14]} reopened {code} after the {DAYS[i % 7]} outage.",
             f"Can someone close {code}? {NAMES[i % 14]} says it is fixed."]
    return forms[i % 3], code


def _event(i: int) -> dict:
    body = copy.deepcopy(load_fixture("webhook-annotation-created-ner.json"))
    text, code = _text(i)
    start = text.index(code)
    body["project"].update(id=PROJECT, label_config=CONFIG)
    body["task"].update(id=3000 + i, project=PROJECT, data={"text": text})
    body["annotation"].update(id=7000 + i, task=3000 + i, project=PROJECT, result=[
        {"id": f"s{i}", "from_name": "ticket", "to_name": "text", "type": "labels",
         "value": {"start": start, "end": start + len(code), "text": code, "labels": ["Ticket"]}}])
    return body


def test_span_annotations_refine_into_a_version_that_finds_what_annotators_mark(tmp_path, redis_conn, redis_url, engine):
    text = "Raj asked to close ticket ZP-9123 before Friday."
    result, prediction, served = _learn_and_predict(tmp_path, redis_conn, redis_url, engine, PROJECT, CONFIG,
                                                    [_event(i) for i in range(N_TEXTS)], text)
    store = GroundTruthStore(redis_conn, PROJECT)
    (first,) = [g for g in store.items() if g.task_id == 3000]
    assert first.spans == {"ticket": [[23, 30, "Ticket"]]} and first.texts["text"][23:30] == _text(0)[1]
    decision = result["controls"]["ticket"]
    metrics = decision["best_metrics"]
    assert metrics["judged"] == N_TEXTS and 0.0 <= metrics["current_exact_f1"] <= 1.0
    assert decision["accepted"] is True, decision
    assert metrics["exact_f1"] > metrics["current_exact_f1"] and metrics["p"] < 0.05
    assert result["status"] == "published" and result["model_version"].endswith(".v1")
    # no cheap stage for spans: the one publication is the second stage's, and `stages` lists it
    assert [(s["stage"], s["model_version"]) for s in result["stages"]] == [("llm", result["model_version"])]
    spans = [(x["value"]["text"], x["value"]["labels"]) for x in prediction["result"]]
    assert ("ZP-9123", ["Ticket"]) in spans, prediction
    report = served.get(f"/versions/{result['model_version']}/report?project={PROJECT}")
    assert report.status_code == 200 and "exact_f1" in report.text and "ticket: 3-nearest" in report.text


def _learn_and_predict(tmp_path, redis_conn, redis_url, engine, project: int, config: str, events: list[dict],
                       text: str):
    """The annotations through /webhook, one refinement job, then /predict of `text` by the version it
    published: (the job's result, the prediction, the serving app's client)."""
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MIN_NEW": "100000",
                                  "REFINE_DELAY": "3600"})
    client = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn).test_client()
    for event in events:
        r = client.post("/webhook", json=event)
        assert r.status_code == 200 and r.json["stored"] == 1, r.json
    result = run_refinement(settings, redis_conn, project, engine=engine)
    served = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn).test_client()
    _wait_ready(served)
    r = served.post("/predict", json={"tasks": [{"id": 1, "data": {"text": text}}], "label_config": config,
                                      "project": f"{project}.1795402611"})
    assert r.status_code == 200, r.json
    (prediction,) = r.json["results"]
    assert prediction["model_version"] == result["model_version"]
    return result, prediction, served


def _wait_ready(client, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while client.get("/health").json.get("model_state") != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)


ASSISTANTS = ["Alexa", "Siri", "Cortana", "Bixby"]
PRODUCT_CONFIG = ('<View><Text name="text" value="$text"/><Labels name="who" toName="text">'
                  '<Label value="Person"/><Label value="Product"/></Labels></View>')
N_TYPED = 10  # the typing head's minimum is lowered to this many texts to keep the real model's test short


def _assistant_text(i: int) -> tuple[str, str, str]:
    person, assistant = NAMES[i % 14], ASSISTANTS[i % 4]
    forms = [f"{person} asked {assistant} to play some jazz.", f"{assistant} woke {person} up at seven.",
             f"{person} told {assistant} to turn off the lights."]
    return forms[i % 3], person, assistant


def _assistant_event(i: int) -> dict:
    body = copy.deepcopy(load_fixture("webhook-annotation-created-ner.json"))
    text, person, assistant = _assistant_text(i)
    body["project"].update(id=PROJECT + 1, label_config=PRODUCT_CONFIG)
    body["task"].update(id=4000 + i, project=PROJECT + 1, data={"text": text})
    body["annotation"].update(id=8000 + i, task=4000 + i, project=PROJECT + 1, result=[
        {"id": f"{kind}{i}", "from_name": "who", "to_name": "text", "type": "labels",
         "value": {"start": text.index(mention), "end": text.index(mention) + len(mention), "text": mention,
                   "labels": [kind]}}
        for kind, mention in (("Person", person), ("Product", assistant))])
    return body


def test_a_typing_head_learns_the_types_annotators_give_what_the_model_types_wrongly(tmp_path, redis_conn, redis_url,
                                                                                       engine, monkeypatch):
    """The model lists the names of people and of voice assistants alike, and calls both a Person;
    the annotations call the assistants a Product, which a head on the mentions learns."""
    from backend.refinement import span_learning

    monkeypatch.setattr(span_learning, "MIN_TYPING_TEXTS", N_TYPED)
    result, prediction, _ = _learn_and_predict(tmp_path, redis_conn, redis_url, engine, PROJECT + 1, PRODUCT_CONFIG,
                                               [_assistant_event(i) for i in range(N_TYPED)],
                                               "Kofi asked Siri to play some jazz.")
    decision = result["controls"]["who"]
    assert decision["accepted"] is True and decision["best"].startswith("typing-head"), decision
    metrics = decision["best_metrics"]
    assert metrics["exact_f1"] > metrics["current_exact_f1"] and metrics["p"] < 0.05
    spans = {x["value"]["text"]: x["value"]["labels"] for x in prediction["result"]}
    assert spans.get("Siri") == ["Product"], prediction
