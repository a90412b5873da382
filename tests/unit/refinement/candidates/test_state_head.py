"""The head that reads the LLM's state at the answer beside the embedding (pure logic: synthetic
states)."""
import numpy as np

from backend.labeling.calibration import Calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.contract import ControlJob
from backend.refinement.candidates.embedding_head import evaluate_head
from backend.refinement.candidates.state_head import STATE_WEIGHTS, StateHead, current_llm, evaluate_state_head
from backend.refinement.validation.control_kind import MULTIPLE, SINGLE
from backend.refinement.validation.crossval import CandidateResult, fold_ids
from tests.unit.helpers import sentiment_control


def _items(n=120, seed=5):
    """Three labels; the embedding tells label 0 from the rest, the state (offset by a large
    common direction, as an LLM's is) tells 1 from 2; the LLM's answer knows nothing."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    emb = np.stack([(gold == 0) * 1.0, (gold != 0) * 1.0], axis=1) + rng.normal(0, 0.3, (n, 2))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    states = rng.normal(0, 1.0, (n, 16)) + 40.0
    states[:, 0] += np.where(gold == 1, 3.0, np.where(gold == 2, -3.0, 0.0))
    return gold, emb, states


def test_the_state_lifts_the_head_where_the_embedding_misses_what_it_carries():
    gold, emb, states = _items()
    folds = fold_ids(len(gold), 5)
    llm = CandidateResult("current", ControlRecipe(), np.full((len(gold), 3), 1 / 3), gold)
    plain = evaluate_head(llm, emb, folds)[0]
    alone, pooled, mixed, stacked = evaluate_state_head(llm, emb, states, folds)
    assert (alone.name, pooled.name, mixed.name, stacked.name) == (
        "head-state", "current+head-state", "current+head-state-mix", "current+head-state-stacked")
    assert alone.metrics["macro_f1"] > plain.metrics["macro_f1"] + 0.2
    head = alone.recipe.head
    assert head.reads_state and head.state_weight in STATE_WEIGHTS and stacked.recipe.head.reads_state
    np.testing.assert_allclose(head.state_mean, states.mean(axis=0))
    # what ships serves what was judged: the head on all items, read back from its stored form
    served = HeadWeights.from_dict(head.to_dict()).combine(llm.probs, emb, states)
    assert (served.argmax(1) == gold).mean() > 0.9


def _job(current_recipe, states, kind=SINGLE, results=()):
    gold = np.arange(40) % 2
    probs = np.eye(2)[gold] * 0.6 + 0.2
    current = CandidateResult("current", current_recipe, probs, gold)
    logits = np.log(probs)
    return ControlJob(None, sentiment_control(), kind, [""] * 40, gold, np.arange(40) % 5, np.zeros((40, 2)),
                      current_recipe, current, logits, Calibrator.identity(2), 0, 1e9, results=list(results),
                      current_states=states)


def test_it_runs_where_the_job_has_states_and_pairs_with_the_current_prompt_alone():
    states = np.zeros((40, 4))
    assert StateHead().plans(_job(ControlRecipe(), None)) == []  # an engine that gives none
    assert StateHead().plans(_job(ControlRecipe(), states, MULTIPLE)) == []
    (plan,) = StateHead().plans(_job(ControlRecipe(), states))
    assert plan.cheap and not plan.pools  # the state is the current prompt's: no other LLM candidate's
    other_prompt = CandidateResult("4-shot", ControlRecipe(PromptVersion(name="4-shot", demos=())),
                                   np.full((40, 2), 0.5), np.arange(40) % 2)
    assert current_llm(_job(ControlRecipe(), states, results=[other_prompt])).name == "current"
    headed = ControlRecipe(head=HeadWeights(((0.0,), (0.0,)), (0.0, 0.0), 0.5))
    served_without_head = current_llm(_job(headed, states, results=[other_prompt]))
    assert served_without_head.name == "current-llm" and served_without_head.recipe.head is None
    np.testing.assert_allclose(served_without_head.probs.argmax(1), np.arange(40) % 2)
