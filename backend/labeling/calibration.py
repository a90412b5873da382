"""Raw label log-likelihoods → probabilities, raw and calibrated.

A Calibrator is an affine map in log space: softmax(ll / T + b) for single choice, and
sigmoid(logit / T + b) per label for multiple choice. Contextual calibration (Zhao et al., 2021)
sets b from content-free inputs ("N/A", "", "[MASK]") so that such an input gets a uniform
distribution; batch calibration (`Calibrator.batched`) moves b further by the lean the prompt's
answers show on a project's unlabelled texts; refinement (candidates/fitted_calibration.py) fits
b and T on ground truth with the same representation. For multiple choice T may be one value per
label (`fit_multilabel_calibrator`): each label is its own yes/no question with its own bias and
spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def raw_probabilities(logits: np.ndarray, multiple: bool) -> np.ndarray:
    return sigmoid(logits) if multiple else softmax(logits)


TEMPERED = "content-free+temperature"  # a prompt's content-free bias, then a temperature fitted on ground truth
BATCH = "batch"  # a prompt's content-free bias, then the lean left on the project's unlabelled texts


@dataclass(frozen=True)
class Calibrator:
    bias: tuple[float, ...]
    temperature: float | tuple[float, ...] = 1.0  # a tuple: one per label (multiple choice)
    method: str = "identity"

    @classmethod
    def identity(cls, n_labels: int) -> "Calibrator":
        return cls(bias=(0.0,) * n_labels)

    @classmethod
    def contextual(cls, content_free_logits: np.ndarray, multiple: bool) -> "Calibrator":
        """Fit b so that the mean content-free input maps to a uniform (single) or 0.5 (multi) answer."""
        cf = np.atleast_2d(np.asarray(content_free_logits, dtype=np.float64))
        if multiple:
            bias = -cf.mean(axis=0)
        else:
            mean_p = softmax(cf).mean(axis=0)
            bias = -np.log(np.clip(mean_p, 1e-12, None))
            bias = bias - bias.mean()
        return cls(bias=tuple(float(b) for b in bias), method="contextual")

    def batched(self, probabilities: np.ndarray) -> "Calibrator":
        """This calibrator followed by batch calibration (Zhou et al., 2023; single choice): each
        answer divided by the mean of its answers on a project's own unlabelled texts
        (`probabilities`), so that no label is favoured across them. Content-free strings show the
        model's lean only roughly; the project's texts show it as the prompt meets them, at the
        cost of assuming no label is rare."""
        mean = np.clip(np.asarray(probabilities, dtype=np.float64).mean(axis=0), 1e-12, None)
        shift = -np.log(mean)
        bias = np.asarray(self.bias) + shift - shift.mean()
        return Calibrator(tuple(float(b) for b in bias), self.temperature, BATCH)

    def apply(self, logits: np.ndarray, multiple: bool) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / np.asarray(self.temperature) + np.asarray(self.bias)
        return raw_probabilities(z, multiple)

    def shifted(self, delta: np.ndarray) -> "Calibrator":
        """This calibrator applied to logits moved by `delta` first: (z + δ) / T + b = z / T + (b + δ / T)."""
        bias = np.asarray(self.bias) + np.asarray(delta, dtype=np.float64) / np.asarray(self.temperature)
        return Calibrator(tuple(float(b) for b in bias), self.temperature, self.method)

    def tempered(self, t: float) -> "Calibrator":
        """This calibrator followed by a temperature `t` (single choice): (z / T0 + b) / t. The
        label stays the same; only how sure it is changes."""
        return Calibrator(tuple(float(b) / t for b in self.bias), float(self.temperature) * t, TEMPERED)

    def to_dict(self) -> dict:
        t = self.temperature
        return {"method": self.method, "bias": list(self.bias), "temperature": list(t) if isinstance(t, tuple) else t}


def fit_calibrator(logits: np.ndarray, gold: np.ndarray, *, l2: float = 1e-2, fit_bias: bool = True,
                   prior: Calibrator | None = None) -> Calibrator:
    """Per-label bias and one temperature that minimise the log-loss on ground truth (single choice).

    A small L2 penalty on the biases keeps a handful of examples from pushing one label to 0.
    With `prior` (the prompt's content-free calibration) the logits are first shifted by its bias
    and the penalty pulls towards it, not towards the raw logits: with more labels than items
    most labels have no example, and shrinking their bias to 0 undoes the content-free
    correction (docs/benchmarks.md).
    With `fit_bias=False` only the temperature is fitted, which never changes the argmax.
    """
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
    if prior is not None:
        z = z / np.asarray(prior.temperature) + np.asarray(prior.bias)
    y = np.zeros_like(z)
    y[np.arange(len(gold)), np.asarray(gold)] = 1.0
    n, k = z.shape

    def loss(params):
        b, s = params[:k], params[k]
        scaled = z * np.exp(-s)
        q = scaled + b
        q = q - q.max(axis=1, keepdims=True)
        logp = q - np.log(np.exp(q).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        value = -(y * logp).sum() / n + l2 * (b @ b)
        d = (p - y) / n
        grad_b = d.sum(axis=0) + 2 * l2 * b
        grad_s = (d * -scaled).sum()
        return value, np.append(grad_b, grad_s)

    start = np.zeros(k + 1)
    bias_bounds = [(None, None)] * k if fit_bias else [(0.0, 0.0)] * k
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bias_bounds + [(-3.0, 3.0)])
    b, s = result.x[:k], result.x[k]
    temperature = float(np.exp(s))
    if prior is not None:  # (z / T0 + b0) / T + b  =  z / (T0 T) + (b0 / T + b)
        b = b + np.asarray(prior.bias) / temperature
        temperature *= float(prior.temperature)
    b = b - b.mean()
    return Calibrator(bias=tuple(float(v) for v in b), temperature=temperature,
                      method="fitted" if fit_bias else "temperature")


# Gaussian prior of the per-label fit, as penalties on the summed log-loss: the bias stays within
# about 0.7 logit of the contextual one (sd 0.7) and the scale within a factor e^0.5 of 1 (sd 0.5)
# unless the items say otherwise. A label seen in a few items barely moves; one seen in hundreds
# (as yes or no) follows its data.
PRIOR_BIAS_STRENGTH = 1.0
PRIOR_LOG_SCALE_STRENGTH = 2.0


def fit_multilabel_calibrator(logits: np.ndarray, gold: np.ndarray, prior: Calibrator) -> Calibrator:
    """Per-label bias and scale on the yes/no logit, fitted on ground truth (items × labels 0/1)
    by penalised log-loss around `prior` (the contextual calibration of the same prompt)."""
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(gold, dtype=np.float64)
    k = z.shape[1]
    b0 = np.asarray(prior.bias, dtype=np.float64)
    a0 = -np.log(np.broadcast_to(np.asarray(prior.temperature, dtype=np.float64), (k,)))

    def loss(params):
        a, b = params[:k], params[k:]
        scaled = z * np.exp(a)
        q = scaled + b
        value = (np.logaddexp(0.0, q) - y * q).sum()
        value += PRIOR_BIAS_STRENGTH * ((b - b0) ** 2).sum() + PRIOR_LOG_SCALE_STRENGTH * ((a - a0) ** 2).sum()
        d = sigmoid(q) - y
        grad_a = (d * scaled).sum(axis=0) + 2 * PRIOR_LOG_SCALE_STRENGTH * (a - a0)
        grad_b = d.sum(axis=0) + 2 * PRIOR_BIAS_STRENGTH * (b - b0)
        return value, np.concatenate([grad_a, grad_b])

    start = np.concatenate([a0, b0])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(-3.0, 3.0)] * k + [(None, None)] * k)
    a, b = result.x[:k], result.x[k:]
    return Calibrator(bias=tuple(float(v) for v in b), temperature=tuple(float(np.exp(-v)) for v in a),
                      method="fitted-per-label")
