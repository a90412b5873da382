"""SetFit-style head: contrastive fine-tuning of the MiniLM body on pairs of labelled items, then
logistic regression on its embeddings (Tunstall et al. 2022, "Efficient Few-Shot Learning Without
Prompts").

Written on the installed sentence-transformers + torch rather than PyPI `setfit`, which would pull
in `datasets`/`evaluate` and may move the pinned transformers/sentence-transformers. The recipe is
the paper's: R = 20 pair iterations (each item once with an item of its label, target cosine 1,
and once with an item of another label, target 0), one epoch, AdamW at 2e-5 with linear warm-up
and decay, batch 16, loss = MSE between the pair's cosine similarity and the target
(sentence-transformers' CosineSimilarityLoss).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from ..labeling.head import Embedder
from ..refinement.candidates.embedding_head import train_head

PAIR_ITERATIONS = 20
LEARNING_RATE = 2e-5
BATCH_SIZE = 16
EPOCHS = 1
WARMUP_FRACTION = 0.1


@dataclass(frozen=True)
class Pair:
    first: int  # item indices
    second: int
    target: float  # 1.0 same label, 0.0 different labels


def contrastive_pairs(gold, iterations: int = PAIR_ITERATIONS, seed: int = 0, max_pairs: int | None = None) -> list[Pair]:
    """Per iteration, every item gets one positive pair (another item of its label, when it has one)
    and one negative pair (an item of another label, when there is one), so positives and negatives
    are balanced whenever every label has two items. Shuffled with `seed`; `max_pairs` keeps the
    first pairs of the shuffle (a time cap that keeps the balance in expectation)."""
    gold = np.asarray(gold)
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(gold == label) for label in np.unique(gold)}
    pairs: list[Pair] = []
    for _ in range(iterations):
        for i, label in enumerate(gold):
            same = members[label][members[label] != i]
            other = np.flatnonzero(gold != label)
            if len(same):
                pairs.append(Pair(i, int(rng.choice(same)), 1.0))
            if len(other):
                pairs.append(Pair(i, int(rng.choice(other)), 0.0))
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    return pairs[:max_pairs] if max_pairs is not None else pairs


def warmup_then_linear_decay(steps: int, warmup_fraction: float = WARMUP_FRACTION):
    """Learning-rate factor per step, as sentence-transformers' WarmupLinear (SetFit's default)."""
    warmup = int(steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def _sentence_embeddings(model, texts: list[str]):
    """With gradients, unlike `model.encode` (everything stays on the CPU)."""
    return model(model.preprocess(texts))["sentence_embedding"]


def fine_tune(model, texts: list[str], gold, *, iterations: int = PAIR_ITERATIONS, epochs: int = EPOCHS,
              learning_rate: float = LEARNING_RATE, batch_size: int = BATCH_SIZE, seed: int = 0,
              max_pairs: int | None = None):
    """A fine-tuned copy of `model` (a SentenceTransformer); `model` itself stays frozen."""
    import torch

    torch.manual_seed(seed)  # dropout
    tuned = copy.deepcopy(model)
    tuned.train()
    pairs = contrastive_pairs(gold, iterations, seed, max_pairs)
    steps = math.ceil(len(pairs) / batch_size) * epochs
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear_decay(steps))
    for _ in range(epochs):
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            items = sorted({p.first for p in batch} | {p.second for p in batch})  # each text encoded once
            row = {item: k for k, item in enumerate(items)}
            emb = _sentence_embeddings(tuned, [texts[i] for i in items])
            first = emb[[row[p.first] for p in batch]]
            second = emb[[row[p.second] for p in batch]]
            target = torch.tensor([p.target for p in batch], dtype=emb.dtype)
            loss = torch.nn.functional.mse_loss(torch.cosine_similarity(first, second), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    tuned.eval()
    return tuned


@dataclass
class SetFitHead:
    """The fine-tuned body (as an Embedder) and the logistic regression trained on its embeddings."""
    embedder: Embedder
    coef: np.ndarray
    intercept: np.ndarray
    pairs: int


def train_setfit_head(model, texts: list[str], gold, n_labels: int, *, seed: int = 0,
                      iterations: int = PAIR_ITERATIONS, max_pairs: int | None = None) -> SetFitHead:
    gold = np.asarray(gold)
    tuned = fine_tune(model, texts, gold, iterations=iterations, seed=seed, max_pairs=max_pairs)
    embedder = Embedder(tuned)
    coef, intercept = train_head(embedder.encode(texts), gold, n_labels)
    return SetFitHead(embedder, coef, intercept, len(contrastive_pairs(gold, iterations, seed, max_pairs)))
