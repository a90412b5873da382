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
