"""The span rewrite's pure parts: which mistakes the teacher reads, the minibatch's F1, and the
search's stops before any text is run (a failing teacher, the call budget, the deadline)."""
import time

from backend.labeling.label_config import SpanControl
from backend.labeling.spans import SpanPrompt
from backend.refinement.candidates.instruction_rewrite import Rewrite, RewriteBudget
from backend.refinement.candidates.teacher import Mistake
from backend.metrics.spans import exact_f1
from backend.refinement.span_rewrite import (MIN_REWRITE_TEXTS, MINIBATCH, NOT_A_NAME, minibatch_mask,
                                             rewrite_candidate, span_mistakes)
from tests.unit.helpers import ScriptedTeacher

CONTROL = SpanControl("ner", "text", "text", ("person", "location"))

TEXTS = ["Kofi asked Siri to play jazz.", "Lena met Omar in Paris."]
GOLDS = [[(0, 4, "person"), (11, 15, "product")], [(0, 4, "person"), (9, 13, "person"), (17, 22, "location")]]
PREDS = [[(0, 4, "person"), (11, 15, "person"), (24, 28, "person")], [(0, 4, "person"), (17, 22, "person")]]


def test_mistakes_are_mentions_typed_wrongly_missed_or_marked_though_not_annotated_each_kind_in_turn():
    mistakes = span_mistakes(TEXTS, PREDS, GOLDS, limit=10)
    assert set(mistakes) == {Mistake("Siri", "product", "person"), Mistake("Paris", "location", "person"),
                             Mistake("Omar", "person", NOT_A_NAME), Mistake("jazz", NOT_A_NAME, "person")}
    first_three = span_mistakes(TEXTS, PREDS, GOLDS, limit=3)
    assert first_three[1] == Mistake("Omar", "person", NOT_A_NAME)  # the missed one comes second
    assert first_three[0].gold != NOT_A_NAME and first_three[0].predicted != NOT_A_NAME  # a wrong type first
    assert first_three[2] == Mistake("jazz", NOT_A_NAME, "person")
    assert span_mistakes(TEXTS, GOLDS, GOLDS, limit=4) == ()


def test_a_mention_repeated_in_several_texts_is_shown_once():
    texts, preds, golds = ["Siri is on.", "Siri is off."], [[(0, 4, "person")]] * 2, [[(0, 4, "product")]] * 2
    assert span_mistakes(texts, preds, golds, limit=4) == (Mistake("Siri", "product", "person"),)


def test_the_minibatch_is_a_fixed_draw_of_minibatch_texts():
    assert minibatch_mask(40).sum() == MINIBATCH and (minibatch_mask(40) == minibatch_mask(40)).all()
    assert minibatch_mask(5).all()


def test_exact_f1_is_micro_over_the_texts():
    # 2 exact of 5 predicted and 5 gold spans
    assert exact_f1(PREDS, GOLDS) == 2 * 2 / (5 + 5)
    assert exact_f1(GOLDS, GOLDS) == 1.0 and exact_f1([[]], [[]]) == 0.0


def _search_without_texts_run(teacher, budget, *, n_texts=40, deadline=float("inf")):
    """rewrite_candidate where nothing may reach an engine: every path here stops before a text is run."""
    texts = [f"Text {i} names Kofi." for i in range(n_texts)]
    golds = [[(13, 17, "person")]] * n_texts
    return rewrite_candidate(Rewrite(teacher, budget), None, CONTROL, SpanPrompt(), texts, golds, golds,
                             [() for _ in texts], seconds_per_text=1.0, deadline=deadline)


def test_a_failing_teacher_ends_the_search_without_a_candidate_or_an_error():
    teacher = ScriptedTeacher([], fail=True)
    found, info = _search_without_texts_run(teacher, RewriteBudget(rounds=3, proposals=2))
    assert found is None and info["stopped"].startswith("teacher failed") and info["rounds"] == 0
    assert info["minibatch_f1_current"] == 1.0 and info["best_instructions"] is None


def test_the_search_asks_nothing_it_could_not_afford_with_the_winners_run_on_the_rest():
    teacher = ScriptedTeacher([["Choose person for people."]])
    found, info = _search_without_texts_run(teacher, RewriteBudget(rounds=3, proposals=2, max_calls=40 - MINIBATCH))
    assert found is None and teacher.calls == 0 and "REFINE_REWRITE_MAX_CALLS" in info["stopped"]
    found, info = _search_without_texts_run(teacher, RewriteBudget(), deadline=time.monotonic() + 10)
    assert found is None and teacher.calls == 0 and info["stopped"] == "time budget spent"


def test_too_few_texts_or_no_teacher_skip_the_rewrite():
    teacher = ScriptedTeacher([["Choose person for people."]])
    found, info = _search_without_texts_run(teacher, RewriteBudget(), n_texts=MIN_REWRITE_TEXTS - 1)
    assert found is None and teacher.calls == 0 and "fewer than" in info["skipped"]
    assert rewrite_candidate(None, None, CONTROL, SpanPrompt(), [], [], [], [], seconds_per_text=1.0,
                             deadline=0.0) == (None, {})
