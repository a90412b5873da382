"""Entity spans on the real embedded model: every span is text of the task at its offsets, with a
label of the config and a probability, beside the other controls of a mixed config."""
import pytest

from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService, extract_texts
from backend.labeling.spans import list_grammar, write_mentions
from tests.conftest import load_fixture

pytestmark = pytest.mark.model

MIXED = """<View>
  <Text name="text" value="$text"/>
  <Choices name="tone" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="City"/><Label value="Company"/></Labels>
  <Labels name="misc" toName="text"><Label value="Product"/></Labels>
  <TextArea name="notes" toName="text"/>
</View>"""
TEXTS = ["Barack Obama flew from Chicago to Paris with Michelle Obama.",
         "🚒 Apple and  Microsoft opened stores in Berlin; Berlin loved Apple.",
         "nothing to see here",
         "Ask Alice in London. Alice knows London well, says Bob."]


def _check(prediction: dict, raw: str, label_task) -> list[dict]:
    spans = [r for r in prediction["result"] if r["type"] == "labels"]
    allowed = {c.name: set(c.labels) for c in label_task.span_controls}
    for r in spans:
        v = r["value"]
        assert raw[v["start"]:v["end"]] == v["text"] and v["text"].strip() == v["text"] and v["text"]
        assert len(v["labels"]) == 1 and v["labels"][0] in allowed[r["from_name"]]
        assert 0.0 <= r["score"] <= 1.0
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    for name in allowed:  # within one control no two spans overlap
        ranges = sorted((r["value"]["start"], r["value"]["end"]) for r in spans if r["from_name"] == name)
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    return spans


def test_a_mixed_config_gets_choices_and_spans_of_the_real_text(engine):
    label_task = parse_label_config(MIXED)
    items = extract_texts([{"data": {"text": t}} for t in TEXTS], label_task, 10_000)
    predictions = LabelingService(engine).predict(items, label_task, ModelVersion("t.v0"))
    found = []
    for prediction, raw in zip(predictions, TEXTS):
        kinds = {r["from_name"] for r in prediction["result"]}
        assert "tone" in kinds and 0.0 <= prediction["score"] <= 1.0
        found += _check(prediction, raw, label_task)
    assert found, "the model found no entity in texts full of names"


def test_mentions_are_whole_words_of_the_text_and_repeats_are_all_marked(engine):
    label_task = parse_label_config(load_fixture("predict-labels-ner.json")["label_config"])
    raw = "Ask Alice in London. Alice knows London well."
    mentions = write_mentions(engine, "List the people and places in each text.\n\n", raw)
    words = set(raw.replace(".", " ").split())
    assert all(set(m.replace(".", " ").split()) <= words and m in raw for m, _ in mentions)
    assert all(0.0 <= p <= 1.0 for _, p in mentions)
    items = extract_texts([{"data": {"text": raw}}], label_task, 10_000)
    (prediction,) = LabelingService(engine).predict(items, label_task, ModelVersion("t.v0"))
    spans = _check(prediction, raw, label_task)
    for text in {r["value"]["text"] for r in spans}:  # every whole-word occurrence of a kept mention
        assert sum(r["value"]["text"] == text for r in spans) >= min(raw.count(text), 1)
    assert list_grammar(raw)  # the grammar of a text with punctuation compiles


def test_a_text_longer_than_the_context_is_read_as_far_as_it_fits(engine):
    label_task = parse_label_config(load_fixture("predict-labels-ner.json")["label_config"])
    raw = "Alice met Bob in Paris. " + "The weather report said rain again today. " * 1500
    items = extract_texts([{"data": {"text": raw}}], label_task, 100_000)
    (prediction,) = LabelingService(engine).predict(items, label_task, ModelVersion("t.v0"))
    _check(prediction, raw, label_task)


def test_an_annotator_s_span_is_proposed_at_its_other_occurrences_with_a_score(engine):
    from backend.labelstudio.payloads import editor_context

    label_task = parse_label_config(MIXED)
    raw = "Alice called. Later alice wrote to ALICE in Paris, and Alice came."
    context = editor_context(label_task, {"params": {"context": {"result": [
        {"from_name": "ner", "value": {"start": 0, "end": 5, "labels": ["Person"]}},
        {"from_name": "tone", "value": {"choices": ["positive"]}}]}}})
    items = extract_texts([{"data": {"text": raw}}], label_task, 10_000)
    (prediction,) = LabelingService(engine).predict(items, label_task, ModelVersion("t.v0"), context=context)
    names = {r["from_name"] for r in prediction["result"]}
    assert "tone" not in names  # the annotator answered it
    ner = [r for r in _check(prediction, raw, label_task) if r["from_name"] == "ner"]
    assert [(r["value"]["start"], r["value"]["text"], r["value"]["labels"]) for r in ner] == [
        (20, "alice", ["Person"]), (35, "ALICE", ["Person"]), (55, "Alice", ["Person"])]
    assert all(0 < r["score"] < 1 for r in ner)


def test_a_version_s_typing_head_scores_the_proposed_occurrences_as_it_types_predictions(engine):
    """The typing head learnt from annotations re-types the occurrences the editor proposes too:
    the toy head calls lower-case words places, so the lower-case "alice" is an unlikely Person."""
    import numpy as np

    from backend.labeling.label_config import SpanControl
    from backend.labeling.span_typing import TypingHead
    from backend.labeling.spans import SpanPrompt, propose_occurrences
    from tests.unit.labeling.test_span_typing import ToyEmbedder

    control = SpanControl(name="ner", to_name="text", field="text", labels=("Person", "City"))
    raw = "Alice called. Later alice wrote to ALICE, and Alice came."
    marked = [(0, 5, "Person")]
    head = TypingHead(((10.0, 0.0, 0.0), (0.0, 10.0, 0.0)), (0.0, 0.0), inputs="mention")
    plain = propose_occurrences(engine, control, SpanPrompt(), raw, marked)
    typed = propose_occurrences(engine, control, SpanPrompt(typing=head), raw, marked, ToyEmbedder())
    assert [(s.start, s.label) for s in typed] == [(s.start, s.label) for s in plain] == [
        (20, "Person"), (35, "Person"), (46, "Person")]
    scores = {s.text: s.score for s in typed}
    assert scores["alice"] < 0.05 < 0.95 < min(scores["ALICE"], scores["Alice"])
    assert not np.allclose([s.score for s in typed], [s.score for s in plain])
    with pytest.raises(ValueError):
        propose_occurrences(engine, control, SpanPrompt(typing=head), raw, marked)  # no embedder
