"""Raw label log-likelihoods → probabilities, raw and calibrated.

A Calibrator is an affine map in log space: softmax(ll / T + b) for single choice, and
sigmoid(logit / T + b) per label for multiple choice. Contextual calibration (Zhao et al., 2021)
sets b from content-free inputs ("N/A", "", "[MASK]") so that such an input gets a uniform
distribution; issue B fits b and T on ground truth with the same representation.
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


@dataclass(frozen=True)
class Calibrator:
    bias: tuple[float, ...]
    temperature: float = 1.0
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

    def apply(self, logits: np.ndarray, multiple: bool) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature + np.asarray(self.bias)
        return raw_probabilities(z, multiple)

    def to_dict(self) -> dict:
        return {"method": self.method, "bias": list(self.bias), "temperature": self.temperature}


def fit_calibrator(logits: np.ndarray, gold: np.ndarray, *, l2: float = 1e-2, fit_bias: bool = True) -> Calibrator:
    """Per-label bias and one temperature that minimise the log-loss on ground truth (single choice).

    A small L2 penalty on the biases keeps a handful of examples from pushing one label to 0.
    With `fit_bias=False` only the temperature is fitted, which never changes the argmax.
    """
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
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
    b = b - b.mean()
    return Calibrator(bias=tuple(float(v) for v in b), temperature=float(np.exp(s)),
                      method="fitted" if fit_bias else "temperature")
