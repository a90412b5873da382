"""The rewrite search's bookkeeping on scripted parts: minibatch, beam, what the teacher is shown,
budgets, and the judge mask every candidate is compared on.

The engine is the scripted one plus instructions that matter (tests/unit/helpers.py): a rule
"<word> means <label>" in the prompt's instructions adds 3 to <label>'s score for texts containing
<word>, so a scripted teacher can propose better and worse instructions and the search must tell
them apart.
"""
import time

import numpy as np
import pytest

from backend.evaluation.datasets import Dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.instruction_rewrite import (MIN_JUDGE_ITEMS, MINIBATCH, BeamEntry, InstructionSearch,
                                                               Rewrite, RewriteBudget, beam_update, pick_minibatch,
                                                               with_label_list)
from backend.refinement.validation.crossval import fold_ids, logits_matrix
from tests.unit.helpers import GOOD, LABELS, MEH, RuleFollowingEngine, ScriptedTeacher, WordEmbedder, data


def setup(n=80, rounds=None, budget=RewriteBudget(rounds=2, proposals=3, beam=2, max_calls=10_000),
          judge_mask=None, deadline=None, fail=False):
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    service = LabelingService(RuleFollowingEngine(), embedder=WordEmbedder())
    texts, gold = data(n)
    current = ControlRecipe()
    teacher = ScriptedTeacher(rounds if rounds is not None else [[MEH, "Text: a Label: spam", GOOD], [GOOD]], fail)
    search = InstructionSearch(Rewrite(teacher, budget), service, control, texts, gold, current,
                               logits_matrix(service, control, current.prompt, texts), fold_ids(n, 5),
                               judge_mask, deadline or time.monotonic() + 600)
    return search, teacher


def test_a_proposal_that_does_not_name_every_label_gets_the_label_list():
    assert with_label_list("Say spam for adverts.", LABELS) == "Say spam for adverts. Answer with exactly one of: spam, ham."
    assert with_label_list(GOOD, LABELS) == GOOD
    assert with_label_list("Hamlet is spam.", LABELS).endswith("one of: spam, ham.")  # whole words only


def test_minibatch_is_label_balanced_and_takes_unjudged_items_first():
    gold = np.array([0] * 30 + [1] * 10)
    judged = np.ones(40, bool)
    judged[[1, 2, 3, 35]] = False
    mb = pick_minibatch(gold, judged, 8, seed=1)
    assert len(mb) == 8 and len(set(mb)) == 8
    assert (gold[mb] == 0).sum() == 4 and (gold[mb] == 1).sum() == 4
    assert {1, 2, 3, 35} <= set(mb)
    assert len(pick_minibatch(np.array([0, 1, 1]), np.ones(3, bool), 8)) == 3


def _entry(name, f1, loss):
    return BeamEntry(name, f1, loss, np.zeros((1, 2)), np.zeros(1, int), 0)


def test_beam_keeps_the_best_first_ties_by_log_loss_then_age():
    beam = [_entry("start", 0.5, 0.7)]
    beam = beam_update(beam, [_entry("a", 0.6, 0.9), _entry("b", 0.6, 0.5), _entry("c", 0.4, 0.1)], 2)
    assert [e.instructions for e in beam] == ["b", "a"]
    beam = beam_update(beam, [_entry("d", 0.6, 0.5)], 2)
    assert [e.instructions for e in beam] == ["b", "d"]


def test_search_finds_the_instruction_that_fixes_the_mistakes_and_shows_the_best_ones_errors():
    search, teacher = setup()
    best = search.search()
    assert best.instructions == GOOD and best.f1 == 1.0
    first, second = teacher.briefs
    assert first.instructions.startswith("Classify the label of each text")  # the default instructions
    # round 1: the start predicts spam everywhere (a tie): only ham items are wrong and shown
    assert first.mistakes and all(m.gold == "ham" and m.predicted == "spam" for m in first.mistakes)
    assert second.instructions == GOOD and second.mistakes == ()  # the beam's best makes none
    assert first.tried == () and second.tried == ((MEH, pytest.approx(1 / 3)),)  # the rest of the beam
    mb_texts = {search.texts[i] for i in search.minibatch}
    assert {m.text for m in first.mistakes} <= mb_texts
    assert search.log.proposals == 2 and search.log.rounds == 2  # the fake demo never got scored
    assert search.log.llm_calls == 2 * 3 + 2 * (MINIBATCH + 3)  # teacher calls + MEH and GOOD scored once


def test_candidates_are_evaluated_on_every_item_and_the_search_items_leave_the_judging():
    search, _ = setup()
    fixed, fitted = search.candidates()
    assert (fixed.name, fitted.name) == ("rewrite", "rewrite+calibrated")
    assert fixed.recipe.prompt.instructions == GOOD and fitted.recipe.calibrator is not None
    assert len(fixed.gold) == 80 and fixed.metrics["macro_f1"] == 1.0
    assert fixed.metrics["rewrite_llm_calls"] <= 10_000 and fixed.metrics["rewrite_proposals"] == 2
    assert fixed.metrics["rewrite_start_minibatch_f1"] == 0.3333  # spam everywhere: ham F1 is 0
    assert fixed.metrics["rewrite_minibatch_f1"] == 1.0
    mask = search.restrict(None)
    assert mask.sum() == 80 - MINIBATCH and not mask[search.minibatch].any()
    judge = np.ones(80, bool)
    judge[:10] = False
    assert (search.restrict(judge) == (judge & mask)).all()


def test_too_few_judge_items_skip_the_rewrite_and_take_no_items():
    search, teacher = setup(n=MINIBATCH + MIN_JUDGE_ITEMS - 1)
    assert search.candidates() == [] and teacher.briefs == []
    assert "judge items would remain" in search.skipped[0]
    assert search.restrict(None) is None


def test_unjudged_items_are_spent_first_so_the_rewrite_can_cost_no_judge_items():
    n = MINIBATCH + MIN_JUDGE_ITEMS - 1
    judge = np.ones(n, bool)
    judge[:MINIBATCH] = False  # e.g. the current version was trained on these
    search, _ = setup(n=n, judge_mask=judge)
    assert len(search.candidates()) == 2
    assert (search.restrict(judge) == judge).all()


def test_garbage_only_or_a_failing_teacher_skips_the_candidate_without_failing():
    search, _ = setup(rounds=[["", "Text: x\nLabel: spam", "!!!! ???? 1234 5678 9999"], ["ok"]])
    assert search.candidates() == [] and "teacher proposed none" in search.skipped[0]
    search, _ = setup(fail=True)
    assert search.candidates() == [] and "teacher failed" in search.skipped[0]
    assert search.restrict(None).sum() == 80 - MINIBATCH  # the teacher may have seen the minibatch


# 0: not even the first round; 56: the teacher once, no proposal scored; 100: one proposal scored
@pytest.mark.parametrize("max_calls", [0, 56, 100])
def test_the_call_budget_covers_the_search_and_the_final_evaluation(max_calls):
    search, _ = setup(budget=RewriteBudget(rounds=3, proposals=3, beam=2, max_calls=max_calls))
    results = search.candidates()
    assert search.log.llm_calls <= max_calls
    assert "REFINE_REWRITE_MAX_CALLS" in search.log.stopped
    if results:
        assert results[0].metrics["rewrite_llm_calls"] == search.log.llm_calls


def test_the_search_stops_while_the_winner_can_still_be_evaluated_before_the_deadline():
    search, teacher = setup(deadline=time.monotonic() + 5)  # less than the reserve for what follows
    assert search.candidates() == [] and teacher.briefs == []
    assert search.log.stopped == "time budget spent"
