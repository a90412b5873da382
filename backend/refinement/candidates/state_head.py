"""The embedding head with the LLM's state at the answer beside the embedding (labeling.head): the
state the current version's pass computed for each item where it read the label, so the job pays
no pass for it and a version serving it pays one token per task. The sentence embedding misses
what the LLM makes of the instruction and the labels; the LLM's label log-probabilities are that
state read through the vocabulary's few label rows only.

Single choice, on an engine that gives the state (`job.current_states`). How loud the state is
beside the embedding (STATE_WEIGHTS) is chosen with the regularisation by cross-validation
(cross_chosen), on the job's items; the candidates are then those of the embedding head: alone,
pooled with the current prompt's LLM answer, mixed, and stacked. They are served with the
current prompt only: the state belongs to it."""
from __future__ import annotations

import numpy as np

from ...labeling.head import state_beside, unit_states
from ...labeling.recipe import ControlRecipe
from ..validation.control_kind import SINGLE
from ..validation.crossval import CandidateResult
from .contract import ControlJob, Plan
from .embedding_head import C_GRID, cross_chosen, evaluate_stacked, head_out_of_fold, head_results, train_head

STATE_WEIGHTS = (0.5, 1.0, 2.0)  # the state's length beside the unit-length embedding


def evaluate_state_head(llm: CandidateResult, embeddings: np.ndarray, states: np.ndarray,
                        folds: np.ndarray) -> list[CandidateResult]:
    """The head on embedding ⊕ state, its weight and C chosen together out of fold; alone, pooled
    and mixed with `llm` (the current prompt's answer), and stacked with it."""
    gold, n_labels = llm.gold, llm.probs.shape[1]
    mean = np.asarray(states, dtype=np.float64).mean(axis=0)  # no label enters it: the same on every fold
    unit = unit_states(states, mean)  # once for every weight
    features = {w: state_beside(embeddings, unit, w) for w in STATE_WEIGHTS}
    oof = {(w, c): head_out_of_fold(features[w], gold, n_labels, False, folds, c) for w in STATE_WEIGHTS for c in C_GRID}
    head_oof, (weight, c) = cross_chosen(oof, gold, folds)
    coef, intercept = train_head(features[weight], gold, n_labels, c=c)
    flags = {"state_weight": weight, "state_mean": tuple(mean.tolist())}
    return [*head_results("head-state", llm, head_oof, coef, intercept, folds, c=c, **flags),
            evaluate_stacked("head-state", llm, features[weight], folds, False, c, **flags)]


def current_llm(job: ControlJob) -> CandidateResult:
    """The best LLM-only result of the current prompt (the state is that prompt's): the current
    version or its fitted calibration; the current prompt as served without its head otherwise."""
    same = [r for r in [job.judged_current, *job.results]
            if r.recipe.head is None and r.recipe.prompt == job.current.prompt]
    if same:
        return max(same, key=lambda r: job.kind.llm_rank(r.metrics))
    calibrator = job.current.calibrator or job.content_free
    return CandidateResult("current-llm", ControlRecipe(job.current.prompt, job.current.calibrator),
                           calibrator.apply(job.current_logits, False), job.gold)


class StateHead:
    """Runs where the job has the current pass's states (single choice, an engine that gives them);
    seconds, so it runs in the cheap stage."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE or job.current_states is None:
            return []
        return [Plan("head-state", lambda: evaluate_state_head(current_llm(job), job.embeddings, job.current_states,
                                                                job.folds), cheap=True)]
