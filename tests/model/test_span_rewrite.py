"""The span rewrite on the real embedded model, the teacher included: the search keeps its call
budget, a proposal is only ever appended to the default instruction, and when its winner becomes
a candidate the texts the search chose on judge no candidate. Nothing asserts that a 270M
teacher's proposal is better, only that whatever it writes is handled safely."""
import pytest

from backend.labeling.label_config import SpanControl
from backend.labeling.service import LabelingService
from backend.labeling.spans import SpanPrompt, default_span_instructions
from backend.refinement import span_rewrite
from backend.refinement.candidates.instruction_rewrite import Rewrite, RewriteBudget
from backend.refinement.candidates.teacher import LocalTeacher, sanitize
from backend.refinement.span_learning import refine_spans
from backend.store.ground_truth import GoldItem
from tests.unit.helpers import ScriptedTeacher

pytestmark = pytest.mark.model

CONTROL = SpanControl("who", "text", "text", ("Person", "Product"))
NAMES = ["Dana", "Omar", "Lena", "Raj", "Mia", "Tom", "Ines", "Kofi", "Sara", "Ivan"]
ASSISTANTS = ["Alexa", "Siri", "Cortana", "Bixby"]
N_TEXTS, MINIBATCH = 8, 3  # the job's minimums lowered to keep the real model's test short


def _item(i: int) -> GoldItem:
    person, assistant = NAMES[i], ASSISTANTS[i % 4]
    text = [f"{person} asked {assistant} to play some jazz.", f"{assistant} woke {person} up at seven."][i % 2]
    spans = sorted([[text.index(person), text.index(person) + len(person), "Person"],
                    [text.index(assistant), text.index(assistant) + len(assistant), "Product"]])
    return GoldItem(500 + i, {"text": text}, {}, 900 + i, f"2026-12-04T10:00:{i:02d}", {"who": spans})


def test_a_rewrite_candidate_is_judged_without_its_minibatch_within_its_call_budget(engine, monkeypatch):
    monkeypatch.setattr(span_rewrite, "MIN_REWRITE_TEXTS", N_TEXTS)
    monkeypatch.setattr(span_rewrite, "MINIBATCH", MINIBATCH)
    teacher = LocalTeacher(engine)
    budget = RewriteBudget(rounds=1, proposals=2, beam=1, max_calls=40)
    decision = refine_spans(LabelingService(engine), CONTROL, [_item(i) for i in range(N_TEXTS)], SpanPrompt(),
                            alpha=0.05, deadline=float("inf"), rewrite=Rewrite(teacher, budget))
    info = decision.metrics["rewrite"]
    assert info["teacher_calls"] == teacher.calls == 2 and info["rounds"] == 1
    assert info["llm_calls"] <= budget.max_calls
    assert 0.0 <= info["minibatch_f1_current"] <= 1.0
    candidates = decision.metrics["candidates"]
    if "rewrite" in candidates:  # its winner beat the current prompt on the minibatch
        assert info["minibatch_f1_best"] > info["minibatch_f1_current"]
        assert decision.metrics["judged"] == N_TEXTS - MINIBATCH
        default = default_span_instructions(CONTROL)
        assert info["best_instructions"].startswith(default + " ")
        proposal = info["best_instructions"][len(default) + 1:]
        assert sanitize(proposal, CONTROL.labels) == proposal
    else:
        assert decision.metrics["judged"] == N_TEXTS
        assert info["minibatch_f1_best"] is None or info["minibatch_f1_best"] <= info["minibatch_f1_current"]
    assert "3-nearest" in candidates


PROPOSAL = "Every name of a human is a Person."  # on these texts the embedded model then types more mentions right
SECOND = "Choose Product when the name is a thing sold by a company."


def test_a_proposal_that_beats_the_current_prompt_on_the_minibatch_is_judged_on_the_other_texts(engine, monkeypatch):
    """A scripted teacher (its proposal through the real sanitiser): the default instruction with
    the proposal appended wins the minibatch and is then judged, like every candidate, on the
    other texts only."""
    monkeypatch.setattr(span_rewrite, "MIN_REWRITE_TEXTS", N_TEXTS)
    monkeypatch.setattr(span_rewrite, "MINIBATCH", MINIBATCH)
    teacher = ScriptedTeacher([[PROPOSAL], [SECOND]])
    current = SpanPrompt()
    decision = refine_spans(LabelingService(engine), CONTROL, [_item(i) for i in range(N_TEXTS)], current,
                            alpha=0.05, deadline=float("inf"), rewrite=Rewrite(teacher, RewriteBudget(2, 1, 1, 40)))
    info, candidates = decision.metrics["rewrite"], decision.metrics["candidates"]
    assert teacher.briefs[0].spans and teacher.briefs[0].instructions == default_span_instructions(CONTROL)
    assert teacher.briefs[1].instructions == PROPOSAL  # the second round rewrites the winner, read alone
    assert info["minibatch_f1_best"] > info["minibatch_f1_current"], info
    assert info["best_instructions"] == f"{default_span_instructions(CONTROL)} {PROPOSAL}"
    assert "rewrite" in candidates and decision.metrics["judged"] == N_TEXTS - MINIBATCH
    # two teacher calls, each proposal on the minibatch, the winner on the rest
    assert info["llm_calls"] == 2 + 2 * MINIBATCH + (N_TEXTS - MINIBATCH)
