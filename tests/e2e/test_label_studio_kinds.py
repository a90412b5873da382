"""Rating, Taxonomy and entity spans beside Choices in real Label Studio projects: the prediction
Label Studio stores has every region in the shape its editor writes (a star, a path with its
ancestors and aliases, spans with offsets and text), with our scores, and an annotator can accept it."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import BASIC_AUTH

pytestmark = pytest.mark.e2e

CONFIG = """<View>
  <Text name="review" value="$review"/>
  <Choices name="tone" toName="review"><Choice value="positive"/><Choice value="negative"/></Choices>
  <Rating name="stars" toName="review" maxRating="5"/>
  <Taxonomy name="topic" toName="review" leafsOnly="true">
    <Choice value="Product"><Choice value="Quality"/><Choice value="Price" alias="cost"/></Choice>
    <Choice value="Service"><Choice value="Delivery"/><Choice value="Support"/></Choice>
  </Taxonomy>
</View>"""
REVIEWS = ("Arrived two weeks late and the box was crushed.", "Great value for the money, I would buy it again.")
PATHS = {("Product", "Quality"), ("Product", "cost"), ("Service", "Delivery"), ("Service", "Support")}


def test_a_project_with_choices_rating_and_taxonomy_gets_one_prediction_with_all_three(label_studio, service):
    ls = label_studio
    project = ls.call("POST", "/api/projects", json={"title": "e2e kinds", "label_config": CONFIG})["id"]
    ls.call("POST", f"/api/projects/{project}/import", json=[{"review": r} for r in REVIEWS])
    ids = sorted(t["id"] for t in ls.tasks(project))
    ml = ls.call("POST", "/api/ml", json={"url": service.url, "project": project, "title": "llm",
                                          "auth_method": "BASIC_AUTH", "basic_auth_user": BASIC_AUTH[0],
                                          "basic_auth_pass": BASIC_AUTH[1]})
    assert ml["state"] == "CO", ml
    ls.retrieve_predictions(project, ids)
    stored = ls.predictions(project)
    assert sorted(p["task"] for p in stored) == ids
    for p in stored:
        regions = {r["from_name"]: r for r in p["result"]}
        assert set(regions) == {"tone", "stars", "topic"}
        assert regions["tone"]["value"]["choices"][0] in ("positive", "negative")
        assert regions["stars"]["type"] == "rating" and regions["stars"]["value"]["rating"] in range(1, 6)
        assert 1 <= regions["stars"]["expected_rating"] <= 5
        assert regions["topic"]["type"] == "taxonomy"
        (path,) = regions["topic"]["value"]["taxonomy"]
        assert tuple(path) in PATHS
        product = regions["tone"]["score"] * regions["stars"]["score"] * regions["topic"]["score"]
        assert p["score"] == pytest.approx(product, abs=1e-5)


MIXED = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="City"/><Label value="Company"/></Labels>
  <Choices name="tone" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <TextArea name="notes" toName="text"/>
</View>"""
NEWS = ("Barack Obama flew from Chicago to Paris with Michelle Obama.",
        "Ask Alice in London. Alice knows London well, says Bob.")


def test_spans_beside_choices_are_stored_and_accepted_as_an_annotation(label_studio, service):
    ls = label_studio
    project = ls.call("POST", "/api/projects", json={"title": "e2e spans", "label_config": MIXED})["id"]
    ls.call("POST", f"/api/projects/{project}/import", json=[{"text": t} for t in NEWS])
    tasks = {t["id"]: t["data"]["text"] for t in ls.tasks(project)}
    ml = ls.call("POST", "/api/ml", json={"url": service.url, "project": project, "title": "llm",
                                          "auth_method": "BASIC_AUTH", "basic_auth_user": BASIC_AUTH[0],
                                          "basic_auth_pass": BASIC_AUTH[1]})
    assert ml["state"] == "CO", ml
    ls.retrieve_predictions(project, sorted(tasks))
    stored = ls.predictions(project)
    assert sorted(p["task"] for p in stored) == sorted(tasks)
    spans = []
    for p in stored:
        text = tasks[p["task"]]
        assert {r["from_name"] for r in p["result"]} >= {"tone"}
        for r in p["result"]:
            if r["from_name"] == "ner":
                v = r["value"]
                assert r["type"] == "labels" and text[v["start"]:v["end"]] == v["text"]
                assert v["labels"][0] in ("Person", "City", "Company") and 0 <= r["score"] <= 1
                spans.append(r)
    assert spans, "no span predicted for texts full of names"
    # an annotator accepts the prediction as it is: Label Studio takes its regions as an annotation
    accepted = next(p for p in stored if any(r["from_name"] == "ner" for r in p["result"]))
    result = [{k: r[k] for k in ("from_name", "to_name", "type", "value")} for r in accepted["result"]]
    annotation = ls.call("POST", f"/api/tasks/{accepted['task']}/annotations",
                         json={"result": result, "parent_prediction": accepted["id"]})
    kept = ls.call("GET", f"/api/annotations/{annotation['id']}")
    assert [r["value"] for r in kept["result"] if r["from_name"] == "ner"] == \
        [r["value"] for r in result if r["from_name"] == "ner"]


INTERACTIVE = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" editable="true"/>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="City"/></Labels>
  <Choices name="tone" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
</View>"""
MEETING = "Ask Alice in London. Alice knows London well, says Bob."


def test_the_editor_s_interactive_request_uses_the_annotator_s_span_and_instruction(label_studio, service):
    """Label Studio's own interactive endpoint, as the editor calls it while the annotator works:
    the span they marked is proposed at its other occurrence, the typed instruction answers the
    choice, and a proposal they deleted is not proposed again for that task."""
    ls = label_studio
    project = ls.call("POST", "/api/projects", json={"title": "e2e interactive", "label_config": INTERACTIVE})["id"]
    ls.call("POST", f"/api/projects/{project}/import", json=[{"text": MEETING}])
    (task,) = [t["id"] for t in ls.tasks(project)]
    ml = ls.call("POST", "/api/ml", json={"url": service.url, "project": project, "title": "llm", "is_interactive": True,
                                          "auth_method": "BASIC_AUTH", "basic_auth_user": BASIC_AUTH[0],
                                          "basic_auth_pass": BASIC_AUTH[1]})
    assert ml["state"] == "CO", ml
    marked = {"id": "m1", "from_name": "ner", "to_name": "text", "type": "labels",
              "value": {"start": 4, "end": 9, "text": "Alice", "labels": ["Person"]}}
    typed = {"id": "p1", "from_name": "prompt", "to_name": "text", "type": "textarea",
             "value": {"text": ["A question to a colleague is positive."]}}
    answer = ls.call("POST", f"/api/ml/{ml['id']}/interactive-annotating",
                     json={"task": task, "context": {"result": [marked, typed]}})
    regions = answer["data"]["result"]
    proposed = [r for r in regions if r["from_name"] == "ner"]
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in proposed] == [(21, 26, ["Person"])]
    assert MEETING[21:26] == "Alice" and 0 <= proposed[0]["score"] <= 1
    (tone,) = [r for r in regions if r["from_name"] == "tone"]
    assert tone["value"]["choices"][0] in ("positive", "negative")
    assert not [r for r in regions if r["from_name"] == "prompt"]  # the annotator's box is theirs

    # the editor applied the proposal (or the annotator deleted it): it is not offered again
    again = ls.call("POST", f"/api/ml/{ml['id']}/interactive-annotating",
                    json={"task": task, "context": {"result": [marked, typed]}})
    assert not [r for r in again["data"]["result"] if r["from_name"] == "ner"]
    # the editor sends a new instruction with the choice it holds, not the spans: the choice is
    # answered anew and no span the annotator has, or was offered, comes back
    tone_held = {"id": "t1", "from_name": "tone", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}
    retyped = dict(typed, value={"text": ["A question is neutral, so negative."]})
    third = ls.call("POST", f"/api/ml/{ml['id']}/interactive-annotating",
                    json={"task": task, "context": {"result": [tone_held, retyped]}})["data"]["result"]
    assert [r["from_name"] for r in third if r["from_name"] == "tone"] == ["tone"]
    spans = [(r["value"]["start"], r["value"]["end"]) for r in third if r["from_name"] == "ner"]
    assert not [(s, e) for s, e in spans for hs, he in [(4, 9), (21, 26)] if s < he and hs < e], spans
