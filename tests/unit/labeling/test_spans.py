"""Span logic without a model: where mentions stand in the raw text, overlaps, the none label."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.labeling.label_config import SpanControl, parse_label_config
from backend.engines.scripted import ScriptedEngine
from backend.labeling.spans import (NONE, SpanDemo, SpanPrompt, list_grammar, null_word, occurrences, render_prefix,
                                    span_region, spans_for, type_words)
from tests.strategies import PROPERTY_SETTINGS

CONTROL = SpanControl(name="ner", to_name="text", field="text", labels=("PER", "LOC"))


def test_occurrences_are_whole_words_in_the_raw_text():
    text = "York and New  York, not Yorkshire; york"
    assert occurrences("York", text) == [(0, 4), (14, 18)]
    assert occurrences("New York", text) == [(9, 18)]  # the prompt showed one space where the text has two
    assert occurrences("", text) == [] and occurrences("Paris", text) == []


def test_occurrences_after_astral_characters_are_python_offsets():
    text = "🚒 firemen meet Alice"
    (start, end), = occurrences("Alice", text)
    assert text[start:end] == "Alice" and start == 15


def test_every_occurrence_is_marked_and_overlaps_go_to_the_more_probable():
    text = "New York loves York. York!"
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    spans = spans_for(CONTROL, text, [("New York", 1.0), ("York", 0.9)], probs)
    assert [(s.text, s.label) for s in spans] == [("New York", "LOC"), ("York", "PER"), ("York", "PER")]
    assert [text[s.start:s.end] for s in spans] == [s.text for s in spans]
    assert spans[0].score == 0.8 and spans[1].score == 0.9 * 0.6


def test_a_mention_more_likely_none_is_dropped():
    spans = spans_for(CONTROL, "Alice met Bob", [("Alice", 1.0), ("Bob", 1.0)], np.array([[0.2, 0.1, 0.7], [0.5, 0.2, 0.3]]))
    assert [s.text for s in spans] == ["Bob"]


def test_null_word_avoids_a_label_that_reads_none():
    assert null_word(CONTROL) == NONE
    assert null_word(SpanControl("n", "t", "t", ("None", "PER"))) != NONE


def test_prefix_shows_labels_and_demos_and_grammar_admits_only_the_text():
    demo = SpanDemo("Alice lives in Paris", (("Alice", "PER"), ("Paris", "LOC")))
    prefix = render_prefix(CONTROL, SpanPrompt(demos=(demo,)), type_words(ScriptedEngine(), CONTROL))
    assert "PER, LOC" in prefix and "- Alice\n- Paris\nTypes:\nAlice: PER\nParis: LOC\n" in prefix
    grammar = list_grammar("Bob in Rome")
    assert "Bob" in grammar and "Types:" in grammar


def test_span_region_is_shaped_like_label_studio_s():
    (span,) = spans_for(CONTROL, "hi Alice", [("Alice", 0.5)], np.array([[0.8, 0.1, 0.1]]))
    region = span_region(CONTROL, span)
    assert region["type"] == "labels" and region["from_name"] == "ner" and region["to_name"] == "text"
    assert region["value"] == {"start": 3, "end": 8, "text": "Alice", "labels": ["PER"]}
    assert region["score"] == 0.4 and set(region["probabilities"]) == {"PER", "LOC", NONE}


def test_labels_on_text_are_served_beside_choices():
    task = parse_label_config('<View><Text name="t" value="$body"/><Labels name="ner" toName="t">'
                              '<Label value="PER"/><Label value="LOC"/></Labels>'
                              '<Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/></Choices></View>')
    assert task.span_controls == (SpanControl("ner", "t", "body", ("PER", "LOC")),)
    assert [c.name for c in task.controls] == ["c"] and task.fields == ("body",)


def test_a_span_prompt_survives_a_version_round_trip():
    from backend.labeling.model_version import ModelVersion

    prompt = SpanPrompt(name="3-nearest", pool=(SpanDemo("Alice in Paris", (("Alice", "PER"), ("Paris", "LOC"))),
                                                SpanDemo("nothing here", ())), nearest=3)
    version = ModelVersion("m.abc.v1", number=1, spans={"ner": prompt})
    again = ModelVersion.from_dict(version.to_dict())
    assert again.span_prompt("ner") == prompt and again.span_prompt("other") == SpanPrompt()
    assert ModelVersion.from_dict({**version.to_dict(), "spans": None}).spans == {}  # versions before spans


def test_shown_spans_map_raw_offsets_into_the_cleaned_text():
    from backend.labeling.spans import shown_spans

    raw = "  Bob\tand  Bob met\u200b Carol "
    spans = [(raw.index("Bob", 3), raw.index("Bob", 3) + 3, "PER"), (raw.index("Carol") - 1, raw.index("Carol") + 5, "PER")]
    (a, b) = shown_spans(raw, spans)
    cleaned = "Bob and Bob met Carol"
    assert (cleaned[a[0]:a[1]], a[0], cleaned[b[0]:b[1]]) == ("Bob", 8, "Carol")
    assert shown_spans("abc", [(0, 2, "X")]) is not None  # part of a word is still found


@settings(**PROPERTY_SETTINGS)
@given(raw=st.text(min_size=1, max_size=200))
def test_the_list_grammar_of_any_text_is_one_llguidance_accepts(raw):
    """Quotes, backslashes, control characters, astral characters: the grammar still compiles,
    so no text can turn a /predict into an engine error."""
    from llguidance import LLMatcher

    from backend.labeling.prompt import clean_text

    shown = clean_text(raw)
    if shown:
        assert LLMatcher.validate_grammar(list_grammar(shown)) == ""


def test_what_the_annotator_marked_is_proposed_at_its_other_occurrences():
    from backend.labeling.spans import other_occurrences

    text = "New York! york, NEW YORK and Yorkshire. Alice met alice."
    marked = [(0, 8, "LOC"), (4, 8, "LOC"), (40, 45, "PER")]  # "New York", "York" inside it, "Alice"
    found = [(text[s:e], label) for s, e, label in other_occurrences(text, marked)]
    assert found == [("york", "LOC"), ("NEW YORK", "LOC"), ("alice", "PER")]
    assert other_occurrences(text, []) == [] and other_occurrences("a b", [(1, 2, "X")]) == []
