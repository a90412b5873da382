"""Contrastive fine-tuning of the MiniLM body's top layers on labelled items (the SetFit recipe,
Tunstall et al. 2022, on the top layers only).

Fine-tuning the whole body costs a job's budget several times over on a CPU: its
cross-validation fits it six times. With the lower layers frozen, their output for each text is
computed once (`LowerStates`) and every training step and every fold's encoding runs the top
layers alone; the stored version holds just those layers (labeling/tuned_body.py).

The pairs are SetFit's: per iteration every item once with an item of its label (target cosine
1) and once with an item of another label (target 0), shuffled, the first `max_pairs` kept (a
time cap that keeps the balance in expectation); one epoch of AdamW with linear warm-up and
decay, cosine-similarity MSE loss.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...labeling.tuned_body import encoder_layers

PAIR_ITERATIONS = 20
LEARNING_RATE = 2e-5
BATCH_SIZE = 16
WARMUP_FRACTION = 0.1
LENGTH_GROUP = 8


@dataclass(frozen=True)
class Pair:
    first: int  # item indices
    second: int
    target: float  # 1.0 same label, 0.0 different labels


def contrastive_pairs(gold, iterations: int = PAIR_ITERATIONS, seed: int = 0, max_pairs: int | None = None) -> list[Pair]:
    """Per iteration, every item gets one positive pair (another item of its label, when it has one)
    and one negative pair (an item of another label, when there is one), so positives and negatives
    are balanced whenever every label has two items. Shuffled with `seed`; `max_pairs` keeps the
    first pairs of the shuffle."""
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


class LowerStates:
    """Each text's token states entering the top `top` layers of `model` (the bundled MiniLM,
    frozen below them), computed once; `embed` runs given top layers on them."""

    def __init__(self, model, texts: list[str], top: int, batch_size: int = 64):
        import torch

        self.model, self.top = model, top
        transformer = model[0]
        n_layers = len(encoder_layers(model))
        self.states, self.lengths = [None] * len(texts), [0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of similar length pad less
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = order[start:start + batch_size]
                features = transformer.preprocess([texts[i] for i in batch])
                out = transformer.auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                                             token_type_ids=features.get("token_type_ids"), output_hidden_states=True)
                hidden = out.hidden_states[n_layers - top]
                for i, row, mask in zip(batch, hidden, features["attention_mask"]):
                    length = int(mask.sum())
                    self.states[i], self.lengths[i] = row[:length].clone(), length

    def embed(self, layers, items) -> "torch.Tensor":  # noqa: F821
        """Mean-pooled, unit-length embeddings of `items` (indices) through `layers` (the top
        layers, tuned or not); with gradients when `layers` are training. The items run in groups
        of LENGTH_GROUP of similar length, so one long text pads only its own group: the same
        embeddings as one padded batch at about half the cost (docs/benchmarks.md)."""
        import torch

        order = sorted(range(len(items)), key=lambda r: self.lengths[items[r]])
        parts = [self._padded(layers, [items[r] for r in order[s:s + LENGTH_GROUP]])
                 for s in range(0, len(order), LENGTH_GROUP)]
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[back]

    def _padded(self, layers, items) -> "torch.Tensor":  # noqa: F821
        import torch

        width = max(self.lengths[i] for i in items)
        hidden = torch.zeros(len(items), width, self.states[0].shape[1])
        mask = torch.zeros(len(items), width)
        for row, i in enumerate(items):
            hidden[row, :self.lengths[i]] = self.states[i]
            mask[row, :self.lengths[i]] = 1.0
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
        for layer in layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.normalize(pooled, dim=1)

    def encode(self, layers, items, batch_size: int = 64) -> np.ndarray:
        import torch

        items = list(items)
        with torch.no_grad():
            parts = [self.embed(layers, items[s:s + batch_size]).numpy() for s in range(0, len(items), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.states[0].shape[1] if self.states else 0))


def tuning_steps(gold, *, seed: int = 0, iterations: int = PAIR_ITERATIONS, max_pairs: int | None = None,
                 batch_size: int = BATCH_SIZE) -> int:
    """The optimizer steps `tune_top` takes on items labelled `gold`: what a budget counts in."""
    return math.ceil(len(contrastive_pairs(gold, iterations, seed, max_pairs)) / batch_size)


def tune_top(lower: LowerStates, items, gold, *, seed: int = 0, iterations: int = PAIR_ITERATIONS,
             max_pairs: int | None = None, learning_rate: float = LEARNING_RATE, batch_size: int = BATCH_SIZE,
             on_step: Callable[[], None] | None = None):
    """A fine-tuned copy of the top layers on the pairs of `items` (indices into `lower`, with
    labels `gold`); the model's own layers stay unchanged. Returns the layers (a ModuleList).
    `on_step` is called after every optimizer step (a budget check may raise there)."""
    import torch

    torch.manual_seed(seed)  # dropout
    layers = copy.deepcopy(torch.nn.ModuleList(list(encoder_layers(lower.model))[-lower.top:]))
    layers.train()
    items = np.asarray(items)
    pairs = contrastive_pairs(gold, iterations, seed, max_pairs)
    train_on_pairs(layers.parameters(), pairs, lambda used: lower.embed(layers, [int(items[k]) for k in used]),
                   learning_rate=learning_rate, batch_size=batch_size, on_step=on_step)
    layers.eval()
    return layers


def train_on_pairs(parameters, pairs: list[Pair], embed: Callable, *, learning_rate: float = LEARNING_RATE,
                   batch_size: int = BATCH_SIZE, epochs: int = 1, on_step: Callable[[], None] | None = None) -> None:
    """Epochs of AdamW with warm-up and linear decay over `pairs` in batches: each batch's items
    embedded once (`embed`: item indices → unit embeddings, with gradients), loss the MSE between
    each pair's cosine and its target (sentence-transformers' CosineSimilarityLoss)."""
    import torch

    parameters = list(parameters)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear_decay(
        math.ceil(len(pairs) / batch_size) * epochs))
    for _ in range(epochs):
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            used = sorted({p.first for p in batch} | {p.second for p in batch})
            row = {k: r for r, k in enumerate(used)}
            emb = embed(used)
            first = emb[[row[p.first] for p in batch]]
            second = emb[[row[p.second] for p in batch]]
            target = torch.tensor([p.target for p in batch], dtype=emb.dtype)
            loss = torch.nn.functional.mse_loss(torch.cosine_similarity(first, second), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step()

