"""Annotation → gold item and id lists: every wrong JSON type is a BadRequest naming its path."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.errors import BadRequest
from backend.labeling.label_config import lone_surrogate_at, parse_label_config
from backend.labelstudio.payloads import MAX_ID, gold_from_annotation, id_list, label_studio_id
from backend.store.ground_truth import GoldItem
from tests.conftest import load_fixture
from tests.strategies import PROPERTY_SETTINGS, ids, json_values, mostly, texts

EVENT = load_fixture("webhook-annotation-created.json")
LABEL_TASK = parse_label_config(EVENT["project"]["label_config"])
LABELS = list(LABEL_TASK.controls[0].labels)


def _event(change):
    body = copy.deepcopy(EVENT)
    change(body)
    return body["task"], body["annotation"]


def _region(body):
    return body["annotation"]["result"][0]


def test_the_captured_annotation_is_a_gold_item():
    gold = gold_from_annotation(LABEL_TASK, EVENT["task"], EVENT["annotation"])
    assert (gold.task_id, gold.annotation_id, gold.labels) == (2, 1, {"sentiment": ["Negative"]})


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b["annotation"].update(result=5), "annotation.result"),
        (lambda b: b["annotation"].update(result={"a": 1}), "annotation.result"),
        (lambda b: b["annotation"].update(result=[5]), "annotation.result[0]"),
        (lambda b: b["annotation"].update(result=[["x"]]), "annotation.result[0]"),
        (lambda b: _region(b).update(from_name=["sentiment"]), "annotation.result[0].from_name"),
        (lambda b: _region(b).update(value=5), "annotation.result[0].value"),
        (lambda b: _region(b).update(value=["Negative"]), "annotation.result[0].value"),
        (lambda b: _region(b).update(value={"choices": {"Negative": 1}}), "annotation.result[0].value.choices"),
        (lambda b: _region(b).update(value={"choices": [["Negative"]]}), "annotation.result[0].value.choices[0]"),
        (lambda b: _region(b).update(value={"choices": [{"a": 1}]}), "annotation.result[0].value.choices[0]"),
        (lambda b: b["annotation"].update(id=float("nan")), "annotation.id"),
        (lambda b: b["annotation"].update(id=float("inf")), "annotation.id"),
        (lambda b: b["annotation"].update(id=True), "annotation.id"),
        (lambda b: b["annotation"].update(id=10**30), "annotation.id"),
        (lambda b: b["annotation"].update(id=MAX_ID + 1), "annotation.id"),  # could not be deleted again
        (lambda b: b["annotation"].update(id="7"), "annotation.id"),
        (lambda b: b["annotation"].update(id=0), "annotation.id"),
        (lambda b: b["task"].update(id=float("inf")), "task.id"),
        (lambda b: b["task"].update(id=False), "task.id"),
        (lambda b: b["task"].update(id=-2), "task.id"),
        (lambda b: (b["task"].pop("id"), b["annotation"].update(task=1.5)), "annotation.task"),
        (lambda b: b["annotation"].update(was_cancelled=[1]), "annotation.was_cancelled"),
        (lambda b: b["annotation"].update(updated_at={"a": 1}), "annotation.updated_at"),
        (lambda b: b["annotation"].update(updated_at="2026\ud800"), "annotation.updated_at"),
        (lambda b: b["task"]["data"].update(text={"a": 1}), "task.data.text"),
        (lambda b: b["task"]["data"].update(text=True), "task.data.text"),
        (lambda b: b["task"]["data"].update(text="bad \ud800 text"), "task.data.text"),
        (lambda b: b.update(task=5), "task.data"),
    ],
)
def test_a_wrong_type_anywhere_is_a_bad_request_naming_its_path(change, field):
    with pytest.raises(BadRequest) as err:
        gold_from_annotation(LABEL_TASK, *_event(change))
    assert err.value.field == field and err.value.status == 400


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["annotation"].update(was_cancelled=True),
        lambda b: _region(b).update(value={"choices": ["Unknown"]}),  # a label the config no longer has
        lambda b: b["annotation"].update(result=[{"type": "relation", "from_id": "r1", "to_id": "r2"}]),
        lambda b: _region(b).update(from_name="other", value=5),  # another control's region is not read
        lambda b: b["task"]["data"].update(text="   "),
    ],
)
def test_no_usable_choice_is_none(change):
    assert gold_from_annotation(LABEL_TASK, *_event(change)) is None


def test_label_studio_ids_are_positive_json_integers_within_the_store_bound():
    assert label_studio_id(1, "x") == 1 and label_studio_id(MAX_ID, "x") == MAX_ID
    for bad in (0, -1, MAX_ID + 1, True, 1.0, float("nan"), "1", None):
        with pytest.raises(BadRequest):
            label_studio_id(bad, "x")


@pytest.mark.parametrize(
    "items, field",
    [
        ([{"id": 10**30}], "annotations[0].id"),
        ([{"id": True}], "annotations[0].id"),
        ([{"id": float("nan")}], "annotations[0].id"),
        ([True], "annotations[0].id"),
        ([1, -1], "annotations[1]"),
        ("1,2", "annotations"),
    ],
)
def test_id_lists_reject_what_is_not_an_id(items, field):
    with pytest.raises(BadRequest) as err:
        id_list({"annotations": items}, "annotations", "ANNOTATIONS_DELETED", bare_ints=True)
    assert err.value.field == field


def test_id_lists_take_objects_and_bare_ids():
    assert id_list({"a": [{"id": 3}, 4]}, "a", "X", bare_ints=True) == [3, 4]


_choices = mostly(st.lists(mostly(st.sampled_from(LABELS + ["Unknown"])), min_size=1, max_size=3))
_region_of_ours = mostly(st.fixed_dictionaries({
    "from_name": mostly(st.sampled_from(["sentiment", "sentiment", "sentiment", "other"])),
    "value": mostly(st.fixed_dictionaries({"choices": _choices})),
}, optional={"type": json_values}))
_annotation = mostly(st.fixed_dictionaries({
    "id": mostly(st.integers(1, 10**6), ids),
    "result": mostly(st.lists(_region_of_ours, min_size=1, max_size=3)),
}, optional={
    "task": ids,
    "was_cancelled": mostly(st.just(False), st.booleans() | json_values),
    "updated_at": mostly(texts),
    "created_at": mostly(texts),
}))
_task = mostly(st.fixed_dictionaries({
    "id": mostly(st.integers(1, 10**6), ids),
    "data": mostly(st.fixed_dictionaries({"text": mostly(texts)})),
}))


@settings(**PROPERTY_SETTINGS)
@given(task=_task, annotation=_annotation)
def test_any_json_gives_a_gold_item_none_or_a_bad_request(task, annotation):
    """Whatever JSON a webhook carries, the parser answers one of three things, and a gold item is
    one the store can hold: ids in range, known labels, valid Unicode text."""
    try:
        gold = gold_from_annotation(LABEL_TASK, task, annotation)
    except BadRequest as exc:
        assert exc.field and exc.message and exc.status == 400
        return
    if gold is None:
        return
    assert isinstance(gold, GoldItem)
    for value in (gold.task_id, gold.annotation_id):
        assert type(value) is int and 1 <= value <= MAX_ID
    assert list(gold.labels) == ["sentiment"] and gold.labels["sentiment"]
    assert set(gold.labels["sentiment"]) <= set(LABELS)
    assert all(text and lone_surrogate_at(text) is None for text in gold.texts.values())
    assert GoldItem.from_json(gold.to_json().encode("utf-8")) == gold


def test_an_event_listing_more_ids_than_one_webhook_should_start_is_refused():
    from backend.errors import PayloadTooLarge
    from backend.labelstudio.payloads import MAX_IDS_PER_EVENT

    assert len(id_list({"annotations": list(range(1, MAX_IDS_PER_EVENT + 1))}, "annotations", "X", bare_ints=True)) \
        == MAX_IDS_PER_EVENT
    with pytest.raises(PayloadTooLarge) as refused:
        id_list({"annotations": list(range(1, MAX_IDS_PER_EVENT + 2))}, "annotations", "X", bare_ints=True)
    assert refused.value.field == "annotations" and refused.value.status == 413


def test_a_stored_text_is_cut_to_what_ground_truth_keeps():
    from backend.labelstudio.payloads import MAX_GOLD_TEXT_CHARS

    task, annotation = _event(lambda b: b["task"]["data"].update(text="word " * MAX_GOLD_TEXT_CHARS))
    gold = gold_from_annotation(LABEL_TASK, task, annotation)
    assert len(gold.texts["text"]) == MAX_GOLD_TEXT_CHARS


RATED = parse_label_config('<View><Text name="text" value="$text"/><Rating name="stars" toName="text" maxRating="5"/>'
                           '</View>')


@pytest.mark.parametrize("rating, labels", [(4, {"stars": ["4"]}), (2.0, {"stars": ["2"]}), (9, None), (0, None),
                                            pytest.param(10**5000, None, id="thousands-of-digits")])
def test_a_rating_annotation_is_its_star_and_a_star_out_of_range_is_no_label(rating, labels):
    annotation = {"id": 3, "result": [{"from_name": "stars", "to_name": "text", "type": "rating",
                                       "value": {"rating": rating}}]}
    gold = gold_from_annotation(RATED, {"id": 1, "data": {"text": "fine"}}, annotation)
    assert (gold.labels if gold else None) == labels


@pytest.mark.parametrize("rating", ["4", None, True, 2.5, [4], float("nan")])
def test_a_rating_that_is_not_a_whole_number_is_a_bad_request_naming_it(rating):
    annotation = {"id": 3, "result": [{"from_name": "stars", "value": {"rating": rating}}]}
    with pytest.raises(BadRequest) as err:
        gold_from_annotation(RATED, {"id": 1, "data": {"text": "fine"}}, annotation)
    assert err.value.field == "annotation.result[0].value.rating"


GEO = parse_label_config('<View><Text name="text" value="$text"/><Taxonomy name="geo" toName="text">'
                         '<Choice value="Europe"><Choice value="Spain" alias="ES"/></Choice><Choice value="Asia"/></Taxonomy></View>')


@pytest.mark.parametrize("paths, labels", [([["Europe", "ES"]], {"geo": ["Europe / Spain"]}),
                                           ([["Asia"], ["Europe"]], {"geo": ["Asia", "Europe"]}),
                                           ([["Europe", "Spain"]], None), ([], None)])
def test_a_taxonomy_annotation_is_its_paths_as_labels(paths, labels):
    annotation = {"id": 3, "result": [{"from_name": "geo", "type": "taxonomy", "value": {"taxonomy": paths}}]}
    gold = gold_from_annotation(GEO, {"id": 1, "data": {"text": "fine"}}, annotation)
    assert (gold.labels if gold else None) == labels


@pytest.mark.parametrize("taxonomy, field", [("Asia", "annotation.result[0].value.taxonomy"),
                                             ([["Asia", 1]], "annotation.result[0].value.taxonomy[0]"),
                                             (["Asia"], "annotation.result[0].value.taxonomy[0]")])
def test_a_taxonomy_that_is_not_a_list_of_paths_is_a_bad_request_naming_it(taxonomy, field):
    annotation = {"id": 3, "result": [{"from_name": "geo", "value": {"taxonomy": taxonomy}}]}
    with pytest.raises(BadRequest) as err:
        gold_from_annotation(GEO, {"id": 1, "data": {"text": "fine"}}, annotation)
    assert err.value.field == field


NER_EVENT = load_fixture("webhook-annotation-created-ner.json")
NER = parse_label_config(NER_EVENT["project"]["label_config"]) if "project" in NER_EVENT else \
    parse_label_config(load_fixture("predict-labels-ner.json")["label_config"])


def test_a_span_annotation_is_gold_spans_in_the_stored_text():
    gold = gold_from_annotation(NER, NER_EVENT["task"], NER_EVENT["annotation"])
    text = gold.texts["text"]
    assert gold.labels == {} and gold.spans == {"label": [[0, 5, "PER"], [15, 19, "ORG"]]}
    assert [text[s:e] for s, e, _ in gold.spans["label"]] == ["Alice", "Acme"]
    assert GoldItem.from_json(gold.to_json()) == gold


def test_span_offsets_follow_the_text_as_stored_and_no_entity_is_gold_too():
    task = {"id": 3, "data": {"text": "  Hi \u200bthere,   Alice   Smith and Alice"}}
    raw = task["data"]["text"]
    regions = [{"from_name": "label", "value": {"start": raw.rindex("Alice"), "end": len(raw), "labels": ["PER"]}},
               {"from_name": "label", "value": {"start": raw.index("Alice") - 1, "end": raw.index("Smith") + 5,
                                                "labels": ["X", "PER"]}}]
    gold = gold_from_annotation(NER, task, {"id": 9, "result": regions})
    text = gold.texts["text"]
    assert [(text[s:e], label) for s, e, label in gold.spans["label"]] == [("Alice", "PER"), ("Alice Smith", "PER")]
    empty = gold_from_annotation(NER, task, {"id": 10, "result": []})
    assert empty.spans == {"label": []} and empty.labels == {}


@pytest.mark.parametrize("value, field", [
    ([1], "annotation.result[0].value"),
    ({"start": "0", "end": 5, "labels": ["PER"]}, "annotation.result[0].value.start"),
    ({"start": 0, "end": 1e9, "labels": ["PER"]}, "annotation.result[0].value.end"),
    ({"start": 0, "end": 5, "labels": "PER"}, "annotation.result[0].value.labels"),
])
def test_a_malformed_span_is_a_bad_request_naming_it(value, field):
    with pytest.raises(BadRequest) as err:
        gold_from_annotation(NER, NER_EVENT["task"], {"id": 1, "result": [{"from_name": "label", "value": value}]})
    assert err.value.field == field


@settings(**PROPERTY_SETTINGS)
@given(raw=st.text(min_size=1, max_size=40), cuts=st.lists(st.tuples(st.integers(0, 45), st.integers(0, 45)), max_size=4))
def test_any_span_annotation_gives_spans_of_the_stored_text_or_none(raw, cuts):
    """Offsets anywhere (inside, outside, reversed, mid-word): every stored span is the cleaned
    text of what the annotator marked, found in the stored text."""
    from backend.labeling.prompt import clean_text

    regions = [{"from_name": "label", "value": {"start": s, "end": e, "labels": ["LOC"]}} for s, e in cuts]
    try:
        gold = gold_from_annotation(NER, {"id": 1, "data": {"text": raw}}, {"id": 2, "result": regions})
    except BadRequest as exc:
        assert exc.field.startswith("task.data.text") or exc.field.startswith("annotation.result")
        return
    if gold is None:
        return
    text = gold.texts["text"]
    for start, end, label in gold.spans.get("label", []):
        assert label == "LOC" and 0 <= start < end <= len(text)
        assert text[start:end] in {clean_text(raw[s:e]) for s, e in cuts}


def test_the_editor_context_of_an_interactive_request():
    from backend.labelstudio.payloads import editor_context

    interactive = load_fixture("predict-interactive.json")
    context = editor_context(parse_label_config(interactive["label_config"]), interactive)
    assert context.answered == {"sentiment"} and context.marked == {}
    batch = load_fixture("predict-choices-single.json")
    assert editor_context(LABEL_TASK, batch) is None
    result = [{"from_name": "label", "value": {"start": 0, "end": 5, "labels": ["PER"]}}]
    marked = editor_context(NER, {"params": {"context": {"result": result}}})
    assert marked.answered == {"label"} and marked.marked == {"label": [(0, 5, "PER")]}
    for body, field in [({"params": {"context": []}}, "params.context"),
                        ({"params": {"context": {"result": {}}}}, "params.context.result")]:
        with pytest.raises(BadRequest) as err:
            editor_context(NER, body)
        assert err.value.field == field


PROMPTED = parse_label_config(
    '<View><Text name="text" value="$text"/><TextArea name="prompt" toName="text"/>'
    '<TextArea name="why" toName="text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="good"/><Choice value="bad"/></Choices></View>')


def test_a_text_area_named_prompt_holds_the_annotators_instruction_and_not_rationales():
    from backend.labelstudio.payloads import editor_context

    assert PROMPTED.instruction_area.name == "prompt" and [t.name for t in PROMPTED.text_areas] == ["why"]
    typed = [{"from_name": "prompt", "to_name": "text", "type": "textarea",
              "value": {"text": ["Sarcasm is bad.", "  Praise of a rival  is bad too. "]}}]
    context = editor_context(PROMPTED, {"params": {"context": {"result": typed}}})
    assert context.instruction == "Sarcasm is bad. Praise of a rival is bad too."
    assert "sentiment" not in context.answered  # the instruction answers no control
    assert editor_context(LABEL_TASK, {"params": {"context": {"result": typed}}}).instruction == ""  # no such area


@pytest.mark.parametrize("value, field", [
    ({"text": [5]}, "params.context.result[0].value.text"),
    ({"text": {"a": 1}}, "params.context.result[0].value.text"),
    ("text", "params.context.result[0].value.text"),
    ({"text": ["a" * 2001]}, "params.context.result"),
    ({"text": ["a lone \ud800 surrogate"]}, "params.context.result"),
])
def test_a_malformed_instruction_is_a_bad_request_naming_it(value, field):
    from backend.labelstudio.payloads import editor_context

    with pytest.raises(BadRequest) as err:
        editor_context(PROMPTED, {"params": {"context": {"result": [{"from_name": "prompt", "value": value}]}}})
    assert err.value.field == field


def test_the_instruction_is_stored_with_the_ground_truth_and_an_annotation_without_one_is_stored_as_before():
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["bad"]}},
              {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": ["Sarcasm is bad."]}}]
    annotation = {"id": 7, "result": result, "updated_at": "2026-12-01T00:00:00Z"}
    gold = gold_from_annotation(PROMPTED, {"id": 3, "data": {"text": "great, another delay"}}, annotation)
    assert gold.instruction == "Sarcasm is bad." and gold.labels == {"sentiment": ["bad"]}
    assert GoldItem.from_json(gold.to_json()) == gold
    plain = gold_from_annotation(PROMPTED, {"id": 3, "data": {"text": "x"}}, dict(annotation, result=result[:1]))
    assert plain.instruction == "" and "instruction" not in plain.to_json()
    only_typed = dict(annotation, result=result[1:])  # an instruction alone labels nothing
    assert gold_from_annotation(PROMPTED, {"id": 3, "data": {"text": "x"}}, only_typed) is None


TWO_CHOICES = parse_label_config(
    '<View><Text name="text" value="$text"/>'
    '<Choices name="topic" toName="text" choice="multiple"><Choice value="food"/><Choice value="service"/></Choices>'
    '<Choices name="tone" toName="text"><Choice value="good"/><Choice value="bad"/></Choices>'
    '<Rating name="stars" toName="text" maxRating="5"/>'
    '<Labels name="ner" toName="text"><Label value="PER"/></Labels></View>')


def test_the_editor_context_carries_the_choices_set_per_control_and_only_that_controls_labels():
    from backend.labelstudio.payloads import editor_context

    interactive = load_fixture("predict-interactive.json")
    context = editor_context(parse_label_config(interactive["label_config"]), interactive)
    assert context.choices == {"sentiment": ("Negative",)}
    result = [{"from_name": "topic", "value": {"choices": ["service", "good", "food", "service"]}},
              {"from_name": "tone", "value": {"choices": ["nope"]}},  # answered, but with no label of its own
              {"from_name": "stars", "value": {"rating": 4}},
              {"from_name": "ner", "value": {"start": 0, "end": 3, "labels": ["PER"]}},
              {"from_name": "elsewhere", "value": {"choices": ["food"]}}]
    context = editor_context(TWO_CHOICES, {"params": {"context": {"result": result}}})
    assert context.choices == {"topic": ("service", "food"), "stars": ("4",)}
    assert context.answered == {"topic", "tone", "stars", "ner", "elsewhere"}
    assert context.marked == {"ner": [(0, 3, "PER")]}
    assert editor_context(TWO_CHOICES, {"params": {"context": {"result": []}}}).choices == {}


@pytest.mark.parametrize("region, field", [
    ({"from_name": "tone", "value": {"choices": "good"}}, "params.context.result[0].value.choices"),
    ({"from_name": "tone", "value": {}}, "params.context.result[0].value.choices"),
    ({"from_name": "tone", "value": {"choices": ["good", 3]}}, "params.context.result[0].value.choices[1]"),
    ({"from_name": "tone", "value": ["good"]}, "params.context.result[0].value"),
    ({"from_name": "stars", "value": {"rating": "4"}}, "params.context.result[0].value.rating"),
    ({"from_name": 7, "value": {"choices": ["good"]}}, "params.context.result[0].from_name"),
])
def test_a_malformed_choice_in_the_editor_context_is_a_bad_request_naming_it(region, field):
    from backend.labelstudio.payloads import editor_context

    with pytest.raises(BadRequest) as err:
        editor_context(TWO_CHOICES, {"params": {"context": {"result": [region]}}})
    assert err.value.field == field
