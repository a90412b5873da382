"""What refinement does differently for each kind of control, behind one interface.

Selection, cross-validation and the refit of the current version are the same for every kind of
control; what differs is how a candidate's probabilities are read: the label metric and what
counts as right, the per-item loss, how a calibration is fitted on ground truth, and how one
temperature is fitted on pooled probabilities. Single choice (a distribution over the labels,
gold a label index per item) and multiple choice (a yes/no probability per label, gold an items ×
labels 0/1 matrix) are the kinds today; a new task type implements ControlKind.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ...labeling.calibration import TEMPERED, Calibrator, fit_calibrator, fit_multilabel_calibrator, sigmoid
from ...labeling.head import logit
from ...labeling.label_config import ChoiceControl
from ...metrics.multi_label import log_loss_per_item, micro_f1, predicted_sets, summarize_multilabel
from ...metrics.single_label import summarize
from .significance import macro_f1_counts, paired_bootstrap_macro_f1, paired_bootstrap_multilabel_f1

CalibrationFit = Callable[[np.ndarray, np.ndarray], Calibrator]


class ControlKind:
    """The interface; `multiple` is the flag the labeling layer's calibrators and heads take."""

    name: str
    multiple: bool
    label_metric: str  # the metrics key of the label F1 that selection compares

    def targets(self, gold) -> np.ndarray:
        """Ground truth as the array this kind's metrics read."""
        raise NotImplementedError

    def summarize(self, gold: np.ndarray, probs: np.ndarray, threshold: np.ndarray | None = None) -> dict:
        """`threshold` (multiple choice): the decision threshold of each item, else 0.5."""
        raise NotImplementedError

    def correct(self, gold: np.ndarray, probs: np.ndarray, threshold: np.ndarray | None = None) -> np.ndarray:
        """Whether the served answer of each item is exactly right (McNemar's table)."""
        raise NotImplementedError

    def item_loss(self, gold: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Log-loss per item: what the probability test of selection compares."""
        raise NotImplementedError

    def answers(self, probs: np.ndarray, threshold: np.ndarray | None = None) -> np.ndarray:
        """The served answer of each item (a label index; a 0/1 row), for answers_f1 on resamples."""
        raise NotImplementedError

    def answers_f1(self, gold: np.ndarray, answers: np.ndarray, n_labels: int) -> float:
        """The label F1 of `answers` (label_metric, without the rest of `summarize`: fast)."""
        raise NotImplementedError

    def label_f1_gain(self, gold: np.ndarray, probs: np.ndarray, other: np.ndarray,
                      threshold: np.ndarray | None = None, other_threshold: np.ndarray | None = None
                      ) -> tuple[float, float]:
        """(label F1 of `probs` minus that of `other`, p of a one-sided paired bootstrap that it is > 0)."""
        raise NotImplementedError

    def calibration_fit(self, calibrator: Calibrator | None, prior: Calibrator | None) -> CalibrationFit | None:
        """How `calibrator` was fitted on ground truth, as a function of (logits, gold); None when
        it learnt nothing from ground truth (content-free), so there is nothing to refit."""
        raise NotImplementedError

    def fit_calibration(self, logits: np.ndarray, gold: np.ndarray, prior: Calibrator | None) -> Calibrator:
        """A calibration fitted on ground truth around `prior` (the prompt's content-free one)."""
        raise NotImplementedError

    def cross_fitted_temperature(self, probs: np.ndarray, gold: np.ndarray,
                                 folds: np.ndarray) -> tuple[np.ndarray, float]:
        """Out-of-fold probabilities after a temperature fitted on the other folds; and the one
        fitted on all items (a pooled probability is not calibrated by itself)."""
        raise NotImplementedError

    def llm_rank(self, metrics: dict) -> tuple:
        """Orders LLM-only candidates when a head or a reasoning mode picks one to build on."""
        raise NotImplementedError

    def pool_score(self, gold: np.ndarray, probs: np.ndarray) -> tuple:
        """Orders the weights an LLM and a head may be pooled with: label F1, ties to lower log-loss."""
        raise NotImplementedError


# calibrator method → (whether its per-label bias is refit too, whether it is fitted around the
# prompt's content-free calibration) (single choice)
REFIT_METHODS = {"fitted": (True, True), "temperature": (False, False), TEMPERED: (False, True)}


class SingleChoice(ControlKind):
    name, multiple, label_metric = "single", False, "macro_f1"

    def targets(self, gold) -> np.ndarray:
        return np.asarray(gold)

    def summarize(self, gold, probs, threshold=None) -> dict:
        return summarize(gold, probs)

    def correct(self, gold, probs, threshold=None) -> np.ndarray:
        return self.answers(probs) == gold

    def item_loss(self, gold, probs) -> np.ndarray:
        return -np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, None))

    def answers(self, probs, threshold=None) -> np.ndarray:
        return probs.argmax(axis=1)

    def answers_f1(self, gold, answers, n_labels) -> float:
        return macro_f1_counts(gold, answers, n_labels)

    def label_f1_gain(self, gold, probs, other, threshold=None, other_threshold=None) -> tuple[float, float]:
        return paired_bootstrap_macro_f1(gold, self.answers(probs), self.answers(other), probs.shape[1])

    def calibration_fit(self, calibrator, prior) -> CalibrationFit | None:
        if calibrator is None or calibrator.method not in REFIT_METHODS:
            return None
        fit_bias, around_prior = REFIT_METHODS[calibrator.method]
        if not fit_bias and around_prior:  # the content-free bias is the prompt's: refit only the temperature
            if prior is None:
                return None
            return lambda logits, gold: replace(fit_calibrator(logits, gold, fit_bias=False, prior=prior),
                                                method=TEMPERED)
        return lambda logits, gold: fit_calibrator(logits, gold, fit_bias=fit_bias, prior=prior if around_prior else None)

    def fit_calibration(self, logits, gold, prior) -> Calibrator:
        return fit_calibrator(logits, gold, prior=prior)

    def cross_fitted_temperature(self, probs, gold, folds) -> tuple[np.ndarray, float]:
        logp = np.log(probs + 1e-12)
        out = np.zeros_like(probs)
        for f in np.unique(folds):
            test = folds == f
            out[test] = fit_calibrator(logp[~test], gold[~test], fit_bias=False).apply(logp[test], False)
        return out, fitted_temperature(probs, gold)

    def llm_rank(self, metrics) -> tuple:
        return metrics["macro_f1"], -metrics["ece"]

    def pool_score(self, gold, probs) -> tuple:
        return (self.answers_f1(gold, self.answers(probs), probs.shape[1]),
                np.log(probs[np.arange(len(gold)), gold] + 1e-12).mean())


class MultipleChoice(ControlKind):
    """Micro-F1, not macro-F1: at a fixed 0.5 threshold a model that says yes to every label gets
    about twice each label's base rate as F1 on every label, so per-label averaging prefers it to
    a calibrated model that predicts one label per item (docs/how-it-learns.md). Every candidate
    fits its decision threshold on ground truth (`with_threshold`), the current version is judged
    with the one it serves."""

    name, multiple, label_metric = "multiple", True, "micro_f1"

    def targets(self, gold) -> np.ndarray:
        return np.asarray(gold, dtype=np.int8)

    def summarize(self, gold, probs, threshold=None) -> dict:
        return summarize_multilabel(gold, probs, threshold)

    def correct(self, gold, probs, threshold=None) -> np.ndarray:
        return (self.answers(probs, threshold) == gold.astype(bool)).all(axis=1)

    def item_loss(self, gold, probs) -> np.ndarray:
        return log_loss_per_item(gold, probs)

    def answers(self, probs, threshold=None) -> np.ndarray:
        return predicted_sets(probs, threshold)

    def answers_f1(self, gold, answers, n_labels) -> float:
        return micro_f1(gold, answers)

    def label_f1_gain(self, gold, probs, other, threshold=None, other_threshold=None) -> tuple[float, float]:
        return paired_bootstrap_multilabel_f1(gold, self.answers(probs, threshold), self.answers(other, other_threshold),
                                              average="micro")

    def calibration_fit(self, calibrator, prior) -> CalibrationFit | None:
        if calibrator is None or calibrator.method != "fitted-per-label" or prior is None:
            return None
        return lambda logits, gold: fit_multilabel_calibrator(logits, gold, prior)

    def fit_calibration(self, logits, gold, prior) -> Calibrator:
        return fit_multilabel_calibrator(logits, gold, prior)

    def cross_fitted_temperature(self, probs, gold, folds) -> tuple[np.ndarray, float]:
        z = logit(probs)
        out = np.zeros_like(probs)
        for f in np.unique(folds):
            test = folds == f
            out[test] = sigmoid(z[test] / yes_no_temperature(z[~test], gold[~test]))
        return out, yes_no_temperature(z, gold)

    def llm_rank(self, metrics) -> tuple:
        return metrics["micro_f1"], -metrics["log_loss"]

    def pool_score(self, gold, probs) -> tuple:
        return self.answers_f1(gold, self.answers(probs), probs.shape[1]), -log_loss_per_item(gold, probs).mean()


SINGLE, MULTIPLE = SingleChoice(), MultipleChoice()


def kind_of(control: ChoiceControl) -> ControlKind:
    return MULTIPLE if control.multiple else SINGLE


def fitted_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The temperature that minimises the log-loss of `probs` on `gold` (the labels never change)."""
    return fit_calibrator(np.log(probs + 1e-12), gold, fit_bias=False).temperature


def yes_no_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """One temperature on yes/no logits minimising the log-loss over all cells."""
    from scipy.optimize import minimize_scalar

    z, y = np.asarray(logits, dtype=np.float64), np.asarray(gold, dtype=np.float64)

    def loss(log_t):
        q = z / np.exp(log_t)
        return float((np.logaddexp(0.0, q) - y * q).sum())

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))
