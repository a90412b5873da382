"""How well a refinement job finds wrong human labels, and what fixing them is worth
(`suspects-bench`): flip a known share of a labelled set's labels at random, run the job's
optimisation on them as a project would, and compare its label-error ranking with the flips;
then let a reviewer check as many of the top suspects as there were flips (fixing those that are
wrong) and serve the version learnt from each ground truth on a test split.

`robust_head_rows` (`suspects-bench --robust-head`) measures instead, on embeddings alone (no
LLM), what training the head with its suspects down-weighted is worth (candidates/robust_head.py):
the test macro-F1 of the plain, label-balanced and robust heads fitted on all the flipped labels
as a job would ship them, and how many of the down-weighted items were flipped ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from ..metrics.single_label import macro_f1
from ..settings import Settings
from .datasets import Dataset
from .holdout import gold_indices


@dataclass
class FlipRun:
    share: float
    flipped: int
    flagged: int
    precision_at_k: float  # k = the number of flipped labels
    recall_at_k: float
    precision_flagged: float
    recall_flagged: float
    macro_f1_noisy: float
    macro_f1_reviewed: float
    chosen_noisy: str
    chosen_reviewed: str
    ranked_from: str
    seconds: float


def flip_labels(gold: np.ndarray, n_labels: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`gold` with round(share × n) labels changed to another label at random; and which."""
    noisy = gold.copy()
    where = rng.choice(len(gold), int(round(share * len(gold))), replace=False)
    noisy[where] = (gold[where] + rng.integers(1, n_labels, len(where))) % n_labels
    return noisy, np.sort(where)


class LabelErrorBench:
    def __init__(self, service: LabelingService, settings: Settings, train: Dataset, test: Dataset):
        self.service, self.settings = service, settings
        self.control = parse_label_config(train.label_config()).controls[0]
        self.texts, self.gold = list(train.texts), np.array(train.gold)
        self.test_texts, self.test_gold = list(test.texts), gold_indices(self.control, test)

    def learn(self, gold: np.ndarray):
        from ..refinement.selection.optimizer import optimize_control

        s = self.settings
        return optimize_control(self.service, self.control, self.texts, gold, ControlRecipe(), folds=s.refine_folds,
                                shots=s.refine_max_shots, alpha=s.refine_alpha,
                                deadline=time.monotonic() + s.refine_max_seconds)

    def served_macro_f1(self, decision) -> float:
        recipe = decision.best.recipe if decision.accepted else ControlRecipe()
        preds = self.service.predict_control(self.control, recipe, self.test_texts)
        pred = np.array([int(np.argmax(p.probabilities)) for p, _ in preds])
        return macro_f1(self.test_gold, pred, len(self.control.labels))

    def clean(self) -> tuple[float, str]:
        decision = self.learn(self.gold)
        return self.served_macro_f1(decision), _chosen(decision)

    def run(self, share: float, seed: int) -> FlipRun:
        t0 = time.monotonic()
        noisy, flipped = flip_labels(self.gold, len(self.control.labels), share, np.random.default_rng(seed))
        decision = self.learn(noisy)
        ranked = [s.position for s in decision.issues]
        k, wrong = len(flipped), set(flipped.tolist())
        top = set(ranked[:k])
        reviewed = noisy.copy()
        reviewed[list(top)] = self.gold[list(top)]  # a reviewer checks the top k and fixes what is wrong
        after = self.learn(reviewed)
        return FlipRun(share, k, len(ranked), _ratio(len(top & wrong), len(top)), _ratio(len(top & wrong), k),
                       _ratio(len(set(ranked) & wrong), len(ranked)), _ratio(len(set(ranked) & wrong), k),
                       self.served_macro_f1(decision), self.served_macro_f1(after), _chosen(decision), _chosen(after),
                       decision.issues_from, round(time.monotonic() - t0, 1))


def _ratio(a: int, b: int) -> float:
    return round(a / b, 3) if b else 0.0


def _chosen(decision) -> str:
    return decision.best.name if decision.accepted else "version 0"


@dataclass
class RobustRun:
    share: float
    seed: int
    flipped: int
    down_weighted: int
    flipped_among_down_weighted: float  # precision of the down-weighting
    flips_down_weighted: float  # recall: the share of the flipped labels down-weighted
    head: float  # test macro-F1, fitted on all the (flipped) labels as shipped
    head_balanced: float
    head_robust: float
    head_random: float  # control: as many items down-weighted as head_robust's, chosen at random
    cv_head: float  # out-of-fold macro-F1 against the flipped labels: what selection compares
    cv_head_robust: float


def robust_head_rows(train_emb: np.ndarray, gold: np.ndarray, test_emb: np.ndarray, test_gold: np.ndarray,
                     n_labels: int, shares: list[float], seeds: list[int], folds: int = 5) -> list[RobustRun]:
    """One run per share and seed: flip the share of `gold` at random (seeded), fit the plain,
    balanced and robust heads on all of it, and score them on the test items (argmax, macro-F1).
    As a control, the head with as many items down-weighted, chosen at random (is it the choice of
    the suspects that matters, or only the weaker fit?). Also the plain and robust heads'
    out-of-fold macro-F1 against the flipped labels, on `folds` folds: what a job's selection
    would see."""
    from ..refinement.candidates.embedding_head import head_out_of_fold, head_probs, train_head
    from ..refinement.candidates.robust_head import SUSPECT_WEIGHT, robust_out_of_fold, suspect_weights
    from ..refinement.validation.crossval import fold_ids

    def test_f1(coef, intercept) -> float:
        return round(macro_f1(test_gold, head_probs(coef, intercept, test_emb).argmax(1), n_labels), 4)

    runs, fold = [], fold_ids(len(gold), folds)
    for share in shares:
        for seed in seeds:
            noisy, flipped = flip_labels(gold, n_labels, share, np.random.default_rng(seed))
            weights = suspect_weights(train_emb, noisy, n_labels, fold)
            down = np.flatnonzero(weights < 1)
            random_weights = np.ones(len(gold))
            at_random = np.random.default_rng(seed + 1000).choice(len(gold), len(down), replace=False)
            random_weights[at_random] = SUSPECT_WEIGHT
            hits = len(set(down.tolist()) & set(flipped.tolist()))
            plain_oof = head_out_of_fold(train_emb, noisy, n_labels, False, fold)
            robust_oof, _ = robust_out_of_fold(train_emb, noisy, n_labels, fold)
            runs.append(RobustRun(
                share, seed, len(flipped), len(down), _ratio(hits, len(down)), _ratio(hits, len(flipped)),
                test_f1(*train_head(train_emb, noisy, n_labels)),
                test_f1(*train_head(train_emb, noisy, n_labels, True)),
                test_f1(*train_head(train_emb, noisy, n_labels, weights=weights)),
                test_f1(*train_head(train_emb, noisy, n_labels, weights=random_weights)),
                round(macro_f1(noisy, plain_oof.argmax(1), n_labels), 4),
                round(macro_f1(noisy, robust_oof.argmax(1), n_labels), 4)))
    return runs
