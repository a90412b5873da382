"""The MiniLM body with its top transformer layers fine-tuned on a project's ground truth.

A fine-tuned head (refinement/candidates/tuned_head.py) changes only the top layers of the
bundled all-MiniLM-L6-v2: the layers below stay the bundled ones, so a version stores just the
top layers' tensors (a few MB, in Redis beside the version, store/tuned_bodies.py) and every
replica rebuilds the body from the bundled model it already has. `TunedBody` is those tensors;
`tuned_embedder` is the Embedder that encodes with them.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Callable

from .head import Embedder

TUNED_PREFIX = "tuned:"  # HeadWeights.embedder of a head on a fine-tuned body: "tuned:<digest>"


def encoder_layers(model):
    """The transformer layers of a SentenceTransformer whose first module wraps a BERT model."""
    return model[0].auto_model.encoder.layer


@dataclass(frozen=True)
class TunedBody:
    """The state of the top `top` layers after fine-tuning, as safetensors bytes."""
    top: int
    tensors: bytes

    @property
    def name(self) -> str:
        """Content-addressed: the same tensors always get the same name (a refit that changes
        nothing stores nothing new)."""
        digest = hashlib.sha256(f"{self.top}:".encode() + self.tensors).hexdigest()
        return f"{TUNED_PREFIX}{digest[:20]}"

    @classmethod
    def of(cls, layers) -> "TunedBody":
        """The fine-tuned top layers (a torch ModuleList, the topmost last)."""
        from safetensors.torch import save

        return cls(len(layers), save({k: v.detach().contiguous() for k, v in layers.state_dict().items()}))

    def apply(self, base):
        """A copy of `base` (the bundled MiniLM) with these top layers; `base` is unchanged."""
        import torch
        from safetensors.torch import load

        model = copy.deepcopy(base)
        torch.nn.ModuleList(list(encoder_layers(model))[-self.top:]).load_state_dict(load(self.tensors))
        model.eval()
        return model


def body_loader(load) -> "Callable[[str], TunedBody | None]":
    """`load` (name → (top, tensors) or None: store.tuned_bodies.TunedBodies.load) as the loader
    LabelingService takes."""
    def body(name: str) -> TunedBody | None:
        stored = load(name)
        return None if stored is None else TunedBody(*stored)

    return body


def is_tuned(embedder_name: str) -> bool:
    return embedder_name.startswith(TUNED_PREFIX)


def tuned_embedder(base, body: TunedBody) -> Embedder:
    return Embedder(body.apply(base))

