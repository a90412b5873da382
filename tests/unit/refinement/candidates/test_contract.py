"""What every candidate is handed: the best LLM-only candidate so far, which heads and reasoning
modes build on (pure logic)."""
import numpy as np

from backend.labeling.calibration import Calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.contract import ControlJob
from backend.refinement.validation.control_kind import MULTIPLE, SINGLE
from backend.refinement.validation.crossval import CandidateResult
from tests.unit.helpers import sentiment_control


def _result(name, gold, right, recipe=ControlRecipe(), kind=SINGLE):
    """`right` of the items answered right, with 0.8 confidence."""
    if kind is MULTIPLE:
        probs = np.where(gold == 1, 0.8, 0.2)
        probs[~right] = 1 - probs[~right]
    else:
        pred = np.where(right, gold, 1 - gold)
        probs = np.eye(2)[pred] * 0.6 + 0.2
    return CandidateResult(name, recipe, probs, gold, kind=kind)


def _job(current, results, kind=SINGLE):
    n = len(current.gold)
    return ControlJob(None, sentiment_control(), kind, [""] * n, current.gold, np.arange(n) % 5, np.zeros((n, 2)),
                      ControlRecipe(), current, np.zeros((n, 2)), Calibrator.identity(2), 0, 1e9, results=results)


def test_the_best_llm_candidate_leaves_out_heads_and_keeps_reasoning_apart():
    gold = np.arange(40) % 2
    current = _result("current", gold, np.arange(40) < 24)
    head = HeadWeights(((0.0,), (0.0,)), (0.0, 0.0), 0.5)
    plain = _result("4-shot", gold, np.arange(40) < 30)
    headed = _result("4-shot+head", gold, np.arange(40) < 38, ControlRecipe(head=head))
    reasoned = _result("v0+reason", gold, np.arange(40) < 36,
                       ControlRecipe(PromptVersion(reasoning=Reasoning())))
    job = _job(current, [plain, headed, reasoned])
    assert job.best_llm() is plain
    assert job.best_llm(reasoned=True) is reasoned
    assert _job(current, [headed]).best_llm() is current  # the current version competes too
    assert _job(_result("current", gold, np.arange(40) < 24, ControlRecipe(head=head)), [headed]).best_llm() is None


def test_a_multi_choice_job_ranks_by_micro_f1():
    gold = (np.arange(80).reshape(40, 2) % 3 == 0).astype(np.int8)
    current = _result("current", gold, np.arange(40) < 20, kind=MULTIPLE)
    better = _result("4-shot", gold, np.arange(40) < 32, kind=MULTIPLE)
    assert _job(current, [better], MULTIPLE).best_llm() is better
