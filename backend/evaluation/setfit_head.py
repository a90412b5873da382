"""SetFit-style head: contrastive fine-tuning of the MiniLM body on pairs of labelled items, then
logistic regression on its embeddings (Tunstall et al. 2022, "Efficient Few-Shot Learning Without
Prompts").

Written on the installed sentence-transformers + torch rather than PyPI `setfit`, which would pull
in `datasets`/`evaluate` and may move the pinned transformers/sentence-transformers. The recipe is
the paper's: R = 20 pair iterations (each item once with an item of its label, target cosine 1,
and once with an item of another label, target 0), one epoch, AdamW at 2e-5 with linear warm-up
and decay, batch 16, loss = MSE between the pair's cosine similarity and the target
(sentence-transformers' CosineSimilarityLoss). The pairs and the schedule are the refinement
job's (refinement/candidates/body_tuning.py), which tunes only the top layers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..labeling.head import Embedder
from ..refinement.candidates.body_tuning import (BATCH_SIZE, LEARNING_RATE, PAIR_ITERATIONS, contrastive_pairs,
                                                 train_on_pairs)
from ..refinement.candidates.embedding_head import train_head

EPOCHS = 1


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
    train_on_pairs(tuned.parameters(), pairs, lambda used: _sentence_embeddings(tuned, [texts[i] for i in used]),
                   learning_rate=learning_rate, batch_size=batch_size, epochs=epochs)
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
