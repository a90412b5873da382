"""Spans on an engine that picks a line from an explicit set (a model server) instead of writing
under a guidance grammar: the option set, the answers a next-token-only engine scores, and the
request path no longer skipping <Labels>. Fake engines (pure logic); the real llama.cpp server:
tests/model/test_openai_spans.py."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.engines.base import Capabilities
from backend.engines.scripted import ScriptedEngine
from backend.errors import EngineError, UpstreamUnavailable
from backend.labeling.label_config import SpanControl, parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import clean_text
from backend.labeling.service import LabelingService, extract_texts
from backend.labeling.spans import (LIST_END, MAX_RUN_WORDS, SpanDemo, SpanPrompt, extract_spans, line_options,
                                    render_prefix, scored_answers, span_support, type_words, write_mentions)
from tests.strategies import PROPERTY_SETTINGS

CONTROL = SpanControl(name="ner", to_name="text", field="text", labels=("person", "creative-work"))
NER = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="person"/><Label value="creative-work"/></Labels>
</View>"""


def test_options_are_the_list_end_then_runs_of_whole_words_shorter_first():
    options = line_options("Bob, in Rome!")
    assert options == ("Types:", "- Bob\n", "- in\n", "- Rome\n", "- Bob, in\n", "- in Rome\n", "- Bob, in Rome\n")
    assert line_options("") == ("Types:",) and line_options("?!") == ("Types:",)
    assert line_options("a a a") == ("Types:", "- a\n", "- a a\n", "- a a a\n")  # each line once


def test_options_are_capped_at_k_words():
    words = [f"w{i}" for i in range(40)]
    options = line_options(" ".join(words))
    assert len(options) == 1 + sum(40 - n + 1 for n in range(1, MAX_RUN_WORDS + 1))
    assert max(len(o.split()) - 1 for o in options[1:]) == MAX_RUN_WORDS
    assert len(line_options(" ".join(words), max_words=2)) == 1 + 40 + 39


@settings(**PROPERTY_SETTINGS)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_every_option_is_a_run_of_whole_words_of_the_shown_text(raw):
    shown = clean_text(raw)
    options = line_options(shown)
    assert options[0] == LIST_END and len(set(options)) == len(options)
    n = len(re.findall(r"\w+", shown))
    assert len(options) <= MAX_RUN_WORDS * n + 1
    for option in options[1:]:
        assert option.startswith("- ") and option.endswith("\n")
        run = option[2:-1]
        assert run and run in shown and "\n" not in run
        assert re.match(r"\w", run) and re.search(r"\w$", run)
        assert re.search(r"(?<!\w)" + re.escape(run) + r"(?!\w)", shown)  # whole words, not part of one


class ServerLike(ScriptedEngine):
    """Like OpenAICompatEngine to the span code: next-token-only scores, a line picked from a set.
    `lines` are the lines it picks in turn (None: an answer outside the set); `types` the first
    word each mention's type is scored highest for."""

    model_id = "server-like"

    def __init__(self, lines, types=None, *, exact=True, one_token=lambda text: True):
        super().__init__()
        self.capabilities = Capabilities(exact_logprobs=False, max_context=4096, next_token_only=True,
                                         exact_token_counts=exact, probability_source="top_logprobs")
        self.lines = list(lines)
        self.types = types or {}
        self.one_token = one_token
        self.offered: list[tuple[str, ...]] = []
        self.branches, self.items = [], []

    def count_tokens(self, text):
        return 1 if self.one_token(text) else 2

    def choose(self, prefix, item, options, *, max_tokens):
        self.offered.append(tuple(options))
        return self.lines.pop(0) if self.lines else LIST_END

    def score(self, prefix, item, branches):
        self.branches += branches
        self.items.append(item)
        out = []
        for b in branches:
            if not b.suffix:  # one more line, or the list's end
                out.append(np.array([-0.1, -2.5]))
            else:
                want = self.types.get(b.suffix[:-1], "none")
                out.append(np.array([-0.2 if c.strip() == want else -3.0 for c in b.continuations]))
        return out


def test_mentions_are_picked_from_the_option_set_and_the_list_end_is_scored_by_first_words():
    engine = ServerLike(["- Bob\n", "- Rome\n", LIST_END])
    mentions = write_mentions(engine, "P\n\n", "Bob in Rome")
    assert [m for m, _ in mentions] == ["Bob", "Rome"]
    assert all(o == line_options("Bob in Rome") for o in engine.offered) and len(engine.offered) == 3
    assert {b.continuations for b in engine.branches} == {("-", "Types")}  # one token each, not "Types:"
    assert all(0.5 < p < 1 for _, p in mentions)


@pytest.mark.parametrize("lines", [[None], ["- Bob\n", None], ["- Bob\n", "- Bob\n"]])
def test_an_answer_outside_the_set_or_a_repeat_ends_the_list(lines):
    mentions = write_mentions(ServerLike(lines), "P\n\n", "Bob in Rome")
    assert [m for m, _ in mentions] == (["Bob"] if len(lines) == 2 else [])


def test_spans_from_a_server_are_text_of_the_task_with_a_label_of_the_control():
    raw = "Bob  met Alice in Rome; Bob read Hamlet."
    engine = ServerLike(["- Bob\n", "- Hamlet\n", "- Rome\n", LIST_END], {"Bob": "person", "Hamlet": "creative"})
    spans = extract_spans(engine, CONTROL, SpanPrompt(), raw)
    assert [(s.text, s.label) for s in spans] == [("Bob", "person"), ("Bob", "person"), ("Hamlet", "creative-work")]
    assert all(raw[s.start:s.end] == s.text for s in spans)  # "Rome" was typed none: dropped
    typing = [b for b in engine.branches if b.suffix]
    assert typing and all(b.continuations == (" person", " creative", " none") for b in typing)


def test_a_sequence_scoring_engine_scores_the_answers_whole():
    assert scored_answers(ScriptedEngine(), ("-", LIST_END)) == ("-", LIST_END)
    assert scored_answers(ServerLike([]), (" person", " creative-work", " not a name")) == (" person", " creative", " not")


def test_answers_a_server_cannot_tell_apart_are_refused():
    with pytest.raises(EngineError, match="distinct"):
        scored_answers(ServerLike([]), (" New York", " New Jersey"))
    with pytest.raises(EngineError, match="one token"):
        engine = ServerLike([], one_token=lambda t: t != " Rumpelstiltskin")
        scored_answers(engine, (" person", " Rumpelstiltskin"))
    # without an exact tokenizer a first word is taken as it is (top-k tokens are compared stripped)
    assert scored_answers(ServerLike([], exact=False, one_token=lambda t: False), (" a", " b")) == (" a", " b")


def test_labels_a_server_cannot_tell_apart_by_first_token_are_typed_by_letter_codes():
    control = SpanControl("ner", "text", "text", ("Product name", "Product type", "person"))
    engine = ServerLike(["- iPhone\n", "- phone\n", "- Bob\n", LIST_END], {"iPhone": "A", "phone": "B", "Bob": "C"})
    demo = SpanDemo("Bob sold his Nokia phone", (("Bob", "person"), ("Nokia", "Product name")))
    spans = extract_spans(engine, control, SpanPrompt(demos=(demo,)), "Bob got an iPhone, his first phone.")
    assert [(s.text, s.label) for s in spans] == [("Bob", "person"), ("iPhone", "Product name"),
                                                  ("phone", "Product type")]
    typing = [b for b in engine.branches if b.suffix]
    assert typing and all(b.continuations == (" A", " B", " C", " D") for b in typing)
    key = "Types: A) Product name, B) Product type, C) person, D) none\n"
    assert engine.items[-1].endswith(f"- Bob\n{key}")  # the typing lines follow the key
    prefix = render_prefix(control, SpanPrompt(demos=(demo,)), type_words(engine, control))
    assert f"- Nokia\n{key}Bob: C\nNokia: A\n" in prefix
    assert "A) Product name" not in prefix.split("\n\n")[0]  # the key is not in the instructions
    # the same labels on an engine that scores whole answers, and distinct first words on a server, stay words
    assert type_words(ScriptedEngine(), control).key == "" and type_words(engine, CONTROL).key == ""


def test_span_support_names_what_an_engine_lacks():
    assert span_support(ServerLike([]), CONTROL) is None
    assert "cannot write under a grammar" in span_support(ScriptedEngine(), CONTROL)
    clash = SpanControl("ner", "text", "text", ("New York", "New Jersey"))
    assert span_support(ServerLike([]), clash) is None  # typed by letter codes
    many = SpanControl("ner", "text", "text", tuple(f"Kind {i}" for i in range(26)))
    assert "at most 25" in span_support(ServerLike([]), many)
    assert span_support(ServerLike([]), SpanControl("ner", "text", "text", tuple(f"Kind {i}" for i in range(25)))) is None

    class Down(ServerLike):
        def count_tokens(self, text):
            raise UpstreamUnavailable("the LLM server cannot be reached")

    with pytest.raises(UpstreamUnavailable):  # a server that is down is not "unsupported"
        span_support(Down([]), CONTROL)


def test_predict_serves_spans_from_a_server_and_warns_where_an_engine_cannot():
    label_task = parse_label_config(NER)
    raw = "Bob read Hamlet"
    items = extract_texts([{"data": {"text": raw}}], label_task, 1000)
    engine = ServerLike(["- Bob\n", "- Hamlet\n", LIST_END], {"Bob": "person", "Hamlet": "creative"})
    (prediction,) = LabelingService(engine, calibration="none").predict(items, label_task, ModelVersion("t.v0"))
    regions = [r["value"] for r in prediction["result"] if r["type"] == "labels"]
    assert [(v["text"], v["labels"]) for v in regions] == [("Bob", ["person"]), ("Hamlet", ["creative-work"])]
    assert all(raw[v["start"]:v["end"]] == v["text"] for v in regions)
    assert not prediction.get("warnings")

    clash = parse_label_config(NER.replace('"person"', '"creative-person"'))  # typed by letter codes
    engine = ServerLike(["- Bob\n", LIST_END], {"Bob": "A"})
    (coded,) = LabelingService(engine, calibration="none").predict(items, clash, ModelVersion("t.v0"))
    assert [r["value"]["labels"] for r in coded["result"]] == [["creative-person"]] and not coded.get("warnings")
    (skipped,) = LabelingService(ScriptedEngine(), calibration="none").predict(items, clash, ModelVersion("t.v0"))
    assert not skipped["result"] and "(Labels) skipped" in skipped["warnings"][0]
