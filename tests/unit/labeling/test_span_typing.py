"""The typing head without a model: trained on synthetic embeddings, stored as plain numbers, and
re-typing (or dropping) the mentions an LLM placed."""
import json

import numpy as np
import pytest

from backend.labeling.label_config import SpanControl
from backend.labeling.span_typing import TypingHead, mention_in_text, typing_features, typing_inputs
from backend.labeling.spans import Placement, SpanPrompt, placed_spans
from backend.refinement.span_learning import (TypingData, TypingSetting, cross_fitted_typing, train_typing_head,
                                              typing_data, typing_folds)

CONTROL = SpanControl(name="ner", to_name="text", field="text", labels=("PER", "LOC"))
PER, LOC, NONE = np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]  # three directions of a toy embedding space


class ToyEmbedder:
    """Capitalised words are people, lower-case ones places, anything quoted in a text is about
    the word quoted; a word starting with "x" is not an entity at all."""

    def encode(self, texts):
        out = []
        for t in texts:
            word = t.split('"')[1] if t.startswith('"') else t
            out.append(NONE if word.startswith("x") else PER if word[:1].isupper() else LOC)
        return np.array(out)


def _synthetic(n_texts: int = 10) -> TypingData:
    rng = np.random.default_rng(0)
    noisy = lambda v, k: v + 0.05 * rng.standard_normal((k, 3))  # noqa: E731
    return TypingData(gold_x=[np.vstack([noisy(PER, 1), noisy(LOC, 1)]) for _ in range(n_texts)],
                      gold_y=[np.array([0, 1]) for _ in range(n_texts)],
                      placed_x=[np.vstack([noisy(PER, 1), noisy(NONE, 1)]) for _ in range(n_texts)],
                      placed_gold=[np.array([True, False]) for _ in range(n_texts)])


def test_a_head_trained_on_annotated_mentions_types_them_and_a_none_class_learns_what_was_not_marked():
    data = _synthetic()
    plain = train_typing_head(data, list(range(10)), 2, TypingSetting(has_none=False))
    assert np.asarray(plain.coef).shape == (2, 3)
    assert plain.head_probs(np.vstack([PER, LOC])).argmax(axis=1).tolist() == [0, 1]
    with_none = train_typing_head(data, list(range(10)), 2, TypingSetting(has_none=True))
    assert np.asarray(with_none.coef).shape == (3, 3) and with_none.has_none
    assert with_none.head_probs(np.vstack([PER, LOC, NONE])).argmax(axis=1).tolist() == [0, 1, 2]


def test_a_head_is_not_trained_on_one_class():
    data = TypingData([np.vstack([PER])], [np.array([0])], [np.zeros((0, 3))], [np.zeros(0, dtype=bool)])
    assert train_typing_head(data, [0], 2, TypingSetting()) is None


def test_the_head_round_trips_through_plain_json_and_old_span_prompts_still_load():
    head = TypingHead(((0.5, -1.0), (0.25, 2.0), (0.0, 0.0)), (0.1, -0.2, 0.0), inputs="both", has_none=True,
                      weight_llm=0.25, pooling="mix")
    prompt = SpanPrompt(name="typing-head", calibration=(1.5, -0.5), typing=head)
    stored = json.loads(json.dumps(prompt.to_dict()))
    assert SpanPrompt.from_dict(stored) == prompt
    old = {k: v for k, v in SpanPrompt(name="v3").to_dict().items()}
    assert "typing" not in old and SpanPrompt.from_dict(old).typing is None
    with pytest.raises(ValueError):
        TypingHead.from_dict({**head.to_dict(), "inputs": "everything"})
    from backend.labeling.version_summary import span_facts  # what /versions shows of it

    assert "drops mentions it types as none" in span_facts(prompt)["typing head"]
    assert span_facts(SpanPrompt())["typing head"].startswith("none")


def test_inputs_are_the_mention_the_mention_in_its_text_or_both():
    pairs = [("Paris", "Paris Hilton in Paris")]
    assert typing_inputs("mention", pairs) == [["Paris"]]
    assert typing_inputs("context", pairs) == [[mention_in_text("Paris", "Paris Hilton in Paris")]]
    assert len(typing_inputs("both", pairs)) == 2
    assert typing_features(ToyEmbedder(), "both", ["Ann", "rome"], "Ann in rome").shape == (2, 6)


def test_the_head_re_types_what_the_llm_typed_wrongly_and_keeps_its_none():
    head = TypingHead(((10.0, 0.0, 0.0), (0.0, 10.0, 0.0)), (0.0, 0.0), inputs="mention")
    llm = np.array([[0.1, 0.6, 0.3], [0.6, 0.2, 0.2]])  # the LLM says LOC for Ann, PER for rome
    typed = head.apply(llm, np.vstack([PER, LOC]))
    assert typed.argmax(axis=1).tolist() == [0, 1] and np.allclose(typed.sum(axis=1), 1)
    assert np.allclose(typed[:, -1], llm[:, -1])  # without a none class the LLM's "none" stands
    half = TypingHead(head.coef, head.intercept, inputs="mention", weight_llm=0.5).apply(llm, np.vstack([PER, LOC]))
    assert 0 < half[0, 1] - typed[0, 1]  # pooled, the LLM's view still counts

    placement = Placement((("Ann", 0.9), ("rome", 0.8)), llm, "Ann flew to rome")
    spans = placed_spans(CONTROL, SpanPrompt(typing=head), "Ann flew to rome", placement, ToyEmbedder())
    assert [(s.text, s.label) for s in spans] == [("Ann", "PER"), ("rome", "LOC")]
    assert spans[0].score == pytest.approx(0.9 * typed[0, 0])
    unchanged = placed_spans(CONTROL, SpanPrompt(), "Ann flew to rome", placement)
    assert [(s.text, s.label) for s in unchanged] == [("Ann", "LOC"), ("rome", "PER")]
    with pytest.raises(ValueError):
        placed_spans(CONTROL, SpanPrompt(typing=head), "Ann flew to rome", placement)  # no embedder


def test_a_none_class_drops_a_placed_mention_that_is_not_an_entity():
    head = TypingHead(((10.0, 0.0, 0.0), (0.0, 10.0, 0.0), (0.0, 0.0, 10.0)), (0.0, 0.0, 0.0), inputs="mention",
                      has_none=True)
    placement = Placement((("Ann", 0.9), ("xyz", 0.9)), np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]]), "Ann xyz")
    spans = placed_spans(CONTROL, SpanPrompt(typing=head), "Ann xyz", placement, ToyEmbedder())
    assert [(s.text, s.label) for s in spans] == [("Ann", "PER")]


def test_cross_fitted_typing_types_each_text_with_a_head_that_did_not_see_it():
    texts = [f"Ann{i} met bob{i} and xo{i}" for i in range(10)]
    golds = [[(0, len(f"Ann{i}"), "PER"), (t.index("bob"), t.index("bob") + len(f"bob{i}"), "LOC")]
             for i, t in enumerate(texts)]
    llm = np.array([[0.2, 0.7, 0.1], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])  # everything typed wrongly, xo kept
    placements = [Placement(((f"Ann{i}", 1.0), (f"bob{i}", 1.0), (f"xo{i}", 1.0)), llm, t) for i, t in enumerate(texts)]
    data = typing_data(ToyEmbedder(), CONTROL, texts, golds, placements, "mention")
    assert data.placed_gold[0].tolist() == [True, True, False] and data.gold_y[0].tolist() == [0, 1]
    for setting, kept in ((TypingSetting(inputs="mention"), 3), (TypingSetting(inputs="mention", has_none=True), 2)):
        spans = cross_fitted_typing(CONTROL, SpanPrompt(), texts, placements, data, setting, typing_folds(10))
        assert all(len(per_text) == kept for per_text in spans)
        assert all([(s.start, s.end, s.label) for s in per_text][:2] == gold for per_text, gold in zip(spans, golds))
