"""Exact label log-likelihoods on llama.cpp logits, with the shared prompt prefix kept in the KV cache.

For every task the engine evaluates only the tokens that differ from what is already in the KV
cache (longest common prefix), so the instructions and demonstrations are paid for once. The
label continuations are walked as a trie in sorted order: labels sharing leading tokens share
their evaluation, and a single-token label costs nothing beyond the item itself.
"""
from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EngineError
from ..labeling.prompt import Branch
from .base import Capabilities

log = logging.getLogger(__name__)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64, copy=False)
    m = z.max()
    return z - (m + np.log(np.exp(z - m).sum()))


class LlamaCppEngine:
    def __init__(self, model_path: str | Path, *, n_ctx: int = 2048, n_threads: int = 0, n_batch: int = 512):
        from llama_cpp import Llama

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"GGUF model not found: {path}", field="LLM_MODEL")
        threads = n_threads or os.cpu_count() or 1
        self._llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self.model_id = path.stem.lower().replace("_", "-")
        self.capabilities = Capabilities(exact_logprobs=True, max_context=self._llm.n_ctx())
        self.tokens_evaluated = 0  # for benchmarks: what the KV cache did not save
        self._tokenize = lru_cache(maxsize=4096)(self._tokenize_uncached)

    def _tokenize_uncached(self, text: str, bos: bool) -> tuple[int, ...]:
        return tuple(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, False))

    def _next_logprobs(self, tokens: Sequence[int], cuts: Sequence[int]) -> np.ndarray:
        """Make the KV cache hold exactly `tokens`; return log P(next token) after them.

        llama.cpp's numbers depend slightly on how tokens are grouped into batches, so evaluation
        always restarts at one of the fixed `cuts` (end of prefix, of item, of suffix, then one
        token at a time): a task gets the same scores whatever the cache held before.
        """
        llm = self._llm
        if len(tokens) > llm.n_ctx():
            raise EngineError(f"prompt of {len(tokens)} tokens exceeds the context of {llm.n_ctx()}")
        cached = llm.input_ids[: llm.n_tokens]
        n = min(len(cached), len(tokens) - 1)  # re-evaluate at least one token to get its logits
        diff = np.nonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))[0]
        common = int(diff[0]) if diff.size else n
        bounds = sorted({0, *[c for c in cuts if 0 < c < len(tokens)], len(tokens)})
        start = max(b for b in bounds if b <= common)
        llm.n_tokens = start
        for lo, hi in zip(bounds, bounds[1:]):
            if hi > start:
                llm.eval(list(tokens[max(lo, start):hi]))
        self.tokens_evaluated += len(tokens) - start
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
        return log_softmax(logits)

    def _score_branch(
        self, context: tuple[int, ...], cuts: tuple[int, ...], continuations: Sequence[tuple[int, ...]]
    ) -> np.ndarray:
        order = sorted(range(len(continuations)), key=lambda i: continuations[i])
        scores = np.zeros(len(continuations))
        memo: dict[tuple[int, ...], np.ndarray] = {}
        longest = max(len(c) for c in continuations)
        cuts = cuts + tuple(len(context) + k for k in range(longest))  # label tokens one at a time
        for i in order:
            cont = continuations[i]
            memo = {k: v for k, v in memo.items() if cont[: len(k)] == k}
            total = 0.0
            for k, token in enumerate(cont):
                path = cont[:k]
                if path not in memo:
                    memo[path] = self._next_logprobs(context + path, cuts)
                total += float(memo[path][token])
            scores[i] = total
        return scores

    def score(self, prefix: str, item: str, branches: Sequence[Branch]) -> list[np.ndarray]:
        prefix_tokens = self._tokenize(prefix, True)
        base = prefix_tokens + self._tokenize(item, False)
        out = []
        with self._lock:
            for branch in branches:
                context = base + (self._tokenize(branch.suffix, False) if branch.suffix else ())
                conts = [self._tokenize(c, False) for c in branch.continuations]
                if any(not c for c in conts):
                    raise EngineError("a label is empty after tokenization", field="label_config")
                cuts = (len(prefix_tokens), len(base), len(context))
                out.append(self._score_branch(context, cuts, conts))
        return out

    def generate(self, prompt: str, max_tokens: int = 8) -> str:
        """Greedy free text after `prompt` (only for the naive baseline the benchmarks compare with)."""
        return self.complete(prompt, max_tokens=max_tokens, temperature=0.0, stop=["\n"])

    def complete(self, prompt: str, *, max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = ()) -> str:
        """Sampled free text after `prompt` (the refinement teacher; never used to pick a label).

        llama.cpp evaluates a completion in its own batches, so the KV cache is emptied before
        and after: scoring only ever resumes from a cache it filled itself at its fixed cuts,
        and keeps giving a task the same numbers.
        """
        with self._lock:
            self._llm.n_tokens = 0
            try:
                out = self._llm.create_completion(prompt, max_tokens=max_tokens, temperature=temperature,
                                                  seed=seed, stop=list(stop))
            finally:
                self._llm.n_tokens = 0
        return out["choices"][0]["text"]

    def prefill(self, text: str) -> int:
        """Evaluate `text` from an empty cache (the raw llama.cpp baseline of `bench`)."""
        tokens = self._tokenize(text, True)
        with self._lock:
            self._llm.n_tokens = 0
            self._llm.eval(list(tokens))
        return len(tokens)
