"""Entity spans through LLM_BACKEND=openai against the real llama-cpp-python server (same GGUF as
the local engine): each listed line is picked from the text's explicit line set under a GBNF
grammar the server applies, the list's end and the types are scored from its top log-probs."""
import pytest

from backend.app import create_app
from backend.engines.openai_compat import OpenAICompatEngine
from backend.labeling.label_config import parse_label_config
from backend.labeling.spans import LIST_END, line_options, span_support
from tests.conftest import load_fixture
from tests.model.test_openai_compat import openai_settings

pytestmark = [pytest.mark.model, pytest.mark.service]

# The fixture's texts with labels whose first words are one Gemma token each (" ORG" is two: see below)
NER = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="Person"/>'
       '<Label value="Company"/><Label value="City"/></Labels></View>')


def test_ner_predict_through_the_server_returns_spans_of_the_text(llama_server, tmp_path, redis_conn, redis_url):
    settings = openai_settings(llama_server.base_url, MODEL_DIR=tmp_path, REDIS_URL=redis_url)
    client = create_app(settings, redis_conn=redis_conn).test_client()
    body = {**load_fixture("predict-labels-ner.json"), "label_config": NER}
    (control,) = parse_label_config(body["label_config"]).span_controls
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    found = []
    for task, item in zip(body["tasks"], r.json["results"]):
        raw = task["data"]["text"]
        assert not any("skipped" in w for w in item.get("warnings", [])), item.get("warnings")
        spans = [x for x in item["result"] if x["type"] == "labels"]
        for region in spans:
            v = region["value"]
            assert region["from_name"] == control.name and region["to_name"] == control.to_name
            assert 0 <= v["start"] < v["end"] <= len(raw) and raw[v["start"]:v["end"]] == v["text"]
            assert v["text"] == v["text"].strip() and len(v["labels"]) == 1 and v["labels"][0] in control.labels
            assert 0.0 <= region["score"] <= 1.0
            assert sum(region["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        found += spans
    assert found, "no span in texts full of names"
    assert llama_server.alive()  # the escaped grammar of every line set was one the server accepts


def test_labels_the_server_cannot_score_by_one_token_are_typed_by_letter_codes(llama_server, tmp_path, redis_conn,
                                                                               redis_url):
    settings = openai_settings(llama_server.base_url, MODEL_DIR=tmp_path, REDIS_URL=redis_url)
    client = create_app(settings, redis_conn=redis_conn).test_client()
    body = load_fixture("predict-labels-ner.json")  # PER, ORG, LOC: " ORG" is two Gemma tokens
    (control,) = parse_label_config(body["label_config"]).span_controls
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    found = []
    for task, item in zip(body["tasks"], r.json["results"]):
        assert not item.get("warnings"), item["warnings"]
        spans = [x for x in item["result"] if x["type"] == "labels"]
        for region in spans:
            v = region["value"]
            assert task["data"]["text"][v["start"]:v["end"]] == v["text"] and v["labels"][0] in control.labels
            assert sum(region["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        found += spans
    assert found, "no span in texts full of names"


def test_a_line_of_punctuated_text_is_always_one_of_its_options(llama_server):
    engine = OpenAICompatEngine(openai_settings(llama_server.base_url))
    control = parse_label_config(NER).span_controls[0]
    assert span_support(engine, control) is None
    shown = 'Ask "Alice" (née Smith) in São Paulo: \\ Alice knows it — 🚒 #London!'
    options = line_options(shown)
    line = engine.choose("List the people and places in each text.\n\n", f"Text: {shown}\nNames:\n", options,
                         max_tokens=24)
    assert line in options and (line == LIST_END or line[2:-1] in shown)
    assert llama_server.alive()
