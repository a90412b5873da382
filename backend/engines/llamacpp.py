"""Exact label log-likelihoods on llama.cpp logits, with the shared prompt prefix kept in the KV cache.

For every task the engine evaluates only the tokens that differ from what is already in the KV
cache (longest common prefix), so the instructions and demonstrations are paid for once. The
label continuations form a trie whose inner nodes are evaluated in one llama.cpp batch, as a
token tree: every node is tagged with the sequence ids of the labels under it, so it attends to
the prompt and to its own ancestors only. Labels sharing leading tokens share their evaluation,
a single-token label costs nothing beyond the item itself, and 150 labels cost one batched
decode instead of hundreds of one-token decodes.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import EngineError
from .base import Branch, Capabilities

log = logging.getLogger(__name__)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64, copy=False)
    m = z.max()
    return z - (m + np.log(np.exp(z - m).sum()))


TOP_K = 40  # sampled rationales draw from this many most likely tokens
# A base model often ends the line at once after "Reasoning:"; these first tokens may not end it.
MIN_RATIONALE_TOKENS = 4


def ends_generation(llm, token: int) -> bool:
    """Whether `token` ends generation (end of text, end of turn) for this model."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def _pick(logprobs: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The next token: the most likely at temperature 0, else one of the TOP_K, sampled."""
    if temperature <= 0:
        return int(logprobs.argmax())
    top = np.argpartition(logprobs, -TOP_K)[-TOP_K:]
    z = logprobs[top] / temperature
    p = np.exp(z - z.max())
    return int(top[rng.choice(len(top), p=p / p.sum())])


TokenPath = tuple[int, ...]  # token path from the prompt to a trie node

# llama.cpp's limit on sequences: 0 is the prompt, each other one a leaf of the label trie.
TREE_SEQUENCES = 256


@dataclass(frozen=True)
class TreeNode:
    path: TokenPath  # the node's token is path[-1], at depth len(path) after the prompt
    sequences: tuple[int, ...]  # ids (from 1) of the batch's leaves at or under this node


def tree_batches(continuations: Sequence[TokenPath], *, max_sequences: int, max_nodes: int) -> Iterator[list[TreeNode]]:
    """The trie nodes whose next-token distribution a label's score needs (every proper,
    non-empty prefix of a continuation), split into batches of at most `max_nodes` nodes and
    `max_sequences` leaves. A batch holds its leaves with all their ancestors, in depth order."""
    inner = {cont[:k] for cont in continuations for k in range(1, len(cont))}
    parents = {node[:-1] for node in inner}
    leaves = sorted(node for node in inner if node not in parents)
    group: list[TokenPath] = []
    nodes: set[TokenPath] = set()

    def emit() -> list[TreeNode]:
        ordered = sorted(nodes, key=lambda p: (len(p), p))
        return [TreeNode(p, tuple(j + 1 for j, leaf in enumerate(group) if leaf[: len(p)] == p)) for p in ordered]

    for leaf in leaves:
        path = {leaf[:k] for k in range(1, len(leaf) + 1)}
        if len(path) > max_nodes:
            raise EngineError(f"a label of {len(leaf) + 1} tokens does not fit the room left in the context", field="LLM_N_CTX")
        if group and (len(group) == max_sequences or len(nodes | path) > max_nodes):
            yield emit()
            group, nodes = [], set()
        group.append(leaf)
        nodes |= path
    if group:
        yield emit()


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
        self._use_tree_context(n_seq_max=TREE_SEQUENCES)
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self.model_id = path.stem.lower().replace("_", "-")
        self.capabilities = Capabilities(exact_logprobs=True, max_context=self._llm.n_ctx(), answer_state=True)
        self.tokens_evaluated = 0  # for benchmarks: what the KV cache did not save
        self._tokenize = lru_cache(maxsize=4096)(self._tokenize_uncached)
        self._ll_tokenizer = None  # built on the first constrained generation

    def _use_tree_context(self, n_seq_max: int) -> None:
        """Swap in a context whose unified KV cache holds several sequences over one shared prompt.

        `Llama` only opens such a context for embeddings; the label trie needs it to evaluate
        sibling branches in one batch."""
        from llama_cpp import _internals, llama_max_parallel_sequences

        llm = self._llm
        params = llm.context_params
        params.n_seq_max = min(n_seq_max, llama_max_parallel_sequences())
        params.kv_unified = True
        context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        llm._ctx.close()
        llm._ctx = context
        self._n_seq = params.n_seq_max
        self._tree_batch = _internals.LlamaBatch(n_tokens=llm.n_batch, embd=0, n_seq_max=self._n_seq, verbose=False)

    def _tokenize_uncached(self, text: str, bos: bool) -> tuple[int, ...]:
        return tuple(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, False))

    def _next_logprobs(self, tokens: Sequence[int], cuts: Sequence[int]) -> np.ndarray:
        """Make the KV cache hold exactly `tokens`; return log P(next token) after them.

        llama.cpp's numbers depend slightly on how tokens are grouped into batches, so evaluation
        always restarts at one of the fixed `cuts` (end of prefix, of item, of suffix): a task gets
        the same scores whatever the cache held before.
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
        return self._logprobs_at(-1)

    def _logprobs_at(self, i: int) -> np.ndarray:
        """log P(next token) after the i-th token of the last decoded batch (-1: its last)."""
        return log_softmax(np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(i), shape=(self._n_vocab,)))

    def _eval_tree(self, n_context: int, batch: list[TreeNode], wanted: dict[TokenPath, set[int]]) -> dict[TokenPath, dict[int, float]]:
        """Evaluate one batch of trie nodes after the `n_context` cached tokens, as a token tree.

        Sequence 0 holds the prompt; it is shared with every leaf's sequence, a node carries the
        sequences of the leaves under it, and llama.cpp's mask lets a node see only cells of its
        first sequence: the prompt and its own ancestors. The leaves' sequences are dropped after,
        so the cache holds exactly the prompt again."""
        import llama_cpp

        llm = self._llm
        memory = llm._ctx.memory
        n_sequences = max(max(node.sequences) for node in batch)
        for seq in range(1, n_sequences + 1):
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        raw = self._tree_batch.batch
        raw.n_tokens = len(batch)
        for i, node in enumerate(batch):
            raw.token[i] = node.path[-1]
            raw.pos[i] = n_context + len(node.path) - 1
            raw.n_seq_id[i] = len(node.sequences)
            for j, seq in enumerate(node.sequences):
                raw.seq_id[i][j] = seq
            raw.logits[i] = True
        try:
            code = llama_cpp.llama_decode(llm._ctx.ctx, raw)
            if code != 0:
                raise EngineError(f"llama.cpp could not evaluate the label tree (llama_decode returned {code})")
            out = {}
            for i, node in enumerate(batch):
                row = self._logprobs_at(i)
                out[node.path] = {token: float(row[token]) for token in wanted[node.path]}
        finally:
            llama_cpp.llama_memory_seq_keep(memory, 0)
        self.tokens_evaluated += len(batch)
        return out

    def _answer_state(self, context: tuple[int, ...]) -> np.ndarray:
        """The final hidden state of the context's last token, where the answer is read.

        With llama.cpp's embeddings output on, every token of a batch is an output, and each
        output costs the vocabulary-wide projection: scoring with it on ran at half speed. So the
        last token alone is evaluated again, with it on, once the branch is scored (its scores
        are not touched; the next text re-evaluates from a cut before that token anyway)."""
        import llama_cpp

        llm = self._llm
        llm.n_tokens = len(context) - 1
        llama_cpp.llama_set_embeddings(llm._ctx.ctx, True)
        try:
            llm.eval([context[-1]])
            pointer = llama_cpp.llama_get_embeddings_ith(llm._ctx.ctx, -1)
            state = np.ctypeslib.as_array(pointer, shape=(llm.n_embd(),)).astype(np.float32)
        finally:
            llama_cpp.llama_set_embeddings(llm._ctx.ctx, False)
        self.tokens_evaluated += 1
        return state

    def _score_branch(
        self, context: tuple[int, ...], cuts: tuple[int, ...], continuations: Sequence[tuple[int, ...]]
    ) -> np.ndarray:
        wanted: dict[TokenPath, set[int]] = {}
        for cont in continuations:
            for k, token in enumerate(cont):
                wanted.setdefault(cont[:k], set()).add(token)
        first = self._next_logprobs(context, cuts)
        logprobs = {(): {token: float(first[token]) for token in wanted[()]}}
        room = min(self._llm.n_batch, self._llm.n_ctx() - len(context))
        for batch in tree_batches(continuations, max_sequences=self._n_seq - 1, max_nodes=room):
            logprobs.update(self._eval_tree(len(context), batch, wanted))
        return np.array([sum(logprobs[cont[:k]][token] for k, token in enumerate(cont)) for cont in continuations])

    def score(self, prefix: str, item: str, branches: Sequence[Branch]) -> list[np.ndarray]:
        return self._score(prefix, item, branches, None)

    def score_with_state(self, prefix: str, item: str,
                         branches: Sequence[Branch]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """`score`, and per branch the final hidden state where its answer is read (the last
        token of prefix + item + suffix): one token evaluated again, not a second pass."""
        states: list[np.ndarray] = []
        return self._score(prefix, item, branches, states), states

    def _score(self, prefix: str, item: str, branches: Sequence[Branch],
               states: list[np.ndarray] | None) -> list[np.ndarray]:
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
                if states is not None:
                    states.append(self._answer_state(context))
        return out

    def rationale(self, prefix: str, item: str, *, max_tokens: int, temperature: float = 0.0, seed: int = 0) -> str:
        """Free text after prefix + item, up to the first newline: reason-then-select's rationale.

        It is decoded on the scoring cache, from the same fixed cuts: the shared prefix stays
        cached for the label scores that follow, and a task gets the same rationale for the same
        seed whatever the cache held before. Greedy at temperature 0, else sampled from the TOP_K
        most likely tokens; the first MIN_RATIONALE_TOKENS do not end the line."""
        prefix_tokens = self._tokenize(prefix, True)
        context = prefix_tokens + self._tokenize(item, False)
        rng = np.random.default_rng(seed)
        llm, written = self._llm, []
        with self._lock:
            if len(context) + max_tokens > llm.n_ctx():
                raise EngineError(f"prompt of {len(context)} tokens leaves no room for a rationale", field="LLM_N_CTX")
            logprobs = self._next_logprobs(context, (len(prefix_tokens),))
            for _ in range(max_tokens):
                token = _pick(logprobs, temperature, rng)
                while len(written) < MIN_RATIONALE_TOKENS and self._ends_line(token):
                    logprobs[token] = -np.inf  # a rationale says something before its line ends
                    token = _pick(logprobs, temperature, rng)
                if self._ends_line(token):
                    break
                written.append(token)
                llm.eval([token])
                self.tokens_evaluated += 1
                logprobs = self._logprobs_at(-1)
        return llm.detokenize(written).decode("utf-8", errors="replace")

    def constrained(self, prefix: str, item: str, grammar: str, *, max_tokens: int) -> str:
        """Greedy text after prefix + item that a grammar admits (Lark, as guidance writes it).

        llguidance masks the tokens the grammar forbids at each step and the most likely allowed
        one is taken, on the scoring cache from its fixed cuts like `rationale`. It ends where the
        grammar is complete, at an end-of-text token the grammar allows, or after `max_tokens`
        (the text so far, which may stop mid-rule)."""
        from llguidance import LLMatcher

        matcher = LLMatcher(self._grammar_tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise EngineError(f"the grammar was refused: {matcher.get_error()}")
        prefix_tokens = self._tokenize(prefix, True)
        context = prefix_tokens + self._tokenize(item, False)
        llm, written = self._llm, []
        with self._lock:
            if len(context) + max_tokens > llm.n_ctx():
                raise EngineError(f"prompt of {len(context)} tokens leaves no room to write", field="LLM_N_CTX")
            logprobs = self._next_logprobs(context, (len(prefix_tokens), len(context)))
            for _ in range(max_tokens):
                if matcher.is_stopped():
                    break
                allowed = np.frombuffer(matcher.compute_logit_bias(), dtype=np.uint8)[: self._n_vocab] > 0
                if not allowed.any() or matcher.is_error():
                    break
                token = int(np.where(allowed, logprobs, -np.inf).argmax())
                if ends_generation(self._llm, token):
                    break
                matcher.consume_token(token)
                written.append(token)
                llm.eval([token])
                self.tokens_evaluated += 1
                logprobs = self._logprobs_at(-1)
        return llm.detokenize(written).decode("utf-8", errors="replace")

    def _grammar_tokenizer(self):
        """llguidance's view of this model's vocabulary (built once: about a second)."""
        if self._ll_tokenizer is None:
            from llguidance.llamacpp import lltokenizer_from_vocab

            self._ll_tokenizer = lltokenizer_from_vocab(self._llm._model.vocab)
        return self._ll_tokenizer

    def _ends_line(self, token: int) -> bool:
        """An end-of-generation token, or one that holds a newline."""
        return ends_generation(self._llm, token) or b"\n" in self._llm.detokenize([token])

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
