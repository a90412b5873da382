"""LLM_BACKEND=openai: label probabilities from any OpenAI-compatible server (OpenAI, vLLM, Ollama,
llama.cpp server), with the local path's guarantees: a label from the set only, and an honest
probability.

How a label is scored. A remote server shows at most one next-token distribution per request, so
each branch (the single-choice question, or one Yes/No question per label of a multi-choice
control) costs ONE request with `max_tokens=1` and `logprobs=k`, on the legacy completions
endpoint with the raw prompt (no chat template; OpenAI's chat-only models use chat instead):

- Labels that are each one token of their own (checked with the server's tokenizer, when it
  exposes one: llama.cpp server, vLLM) are scored directly, exactly like the local engine.
- **Multi-token labels**, labels sharing a first token, and every label on a server whose
  tokenizer we cannot see, are listed in the prompt with one-letter codes ("A) very positive",
  "B) positive", ...) and the code tokens " A", " B", ... are scored instead (labeling/prompt.py).
  The probability of a multi-token label is therefore the model's probability of choosing its
  code, not of generating its words; at most 26 labels per control.
- The allowed answers are renormalised over the set (labeling/scoring.py). An answer missing from
  the top-k gets a ceiling: the most probability it could have had (next_token.py). Hence
  `exact_logprobs=False`: this is a top-k approximation of the local engine's exact scores.
- The label is the argmax over the allowed answers, so it is in the set by construction. With
  `max_tokens=1` a grammar can only force a *prefix* of an answer (measured: a grammar of
  " subjective" | " objective" generated " "), so logprob requests are not constrained.
- A server that gives no logprobs (probed once with one request, or OPENAI_PROBABILITIES=votes)
  gets self-consistency votes instead: OPENAI_VOTES separate requests (llama.cpp ignores `n`)
  with seeds 0..n-1 at temperature 1, each constrained to the set where the server can do it
  (openai_server.py) and validated anyway; P = (votes + ½) / (valid votes + ½·K). Predictions
  then say `"probability_source": "votes"`.

Calibration (labeling/calibration.py) applies on top of either, as for the local engine.

Entity spans: a server takes no guidance grammar, so `choose` picks each line of the mention list
from an explicit option set (labeling/spans.py), forced with the kind's own mechanism; the list's
end and the types are then scored like any answer, by their first word.

Nothing touches the network at construction: the server is probed on first use (then cached),
so a backend started before its LLM server answers 503 until the server is up, instead of
failing for good.
"""
from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import openai

from ..errors import EngineError, UpstreamError
from ..settings import Settings
from .base import Branch, Capabilities
from .next_token import allowed_logprobs, answer_key, vote_logprobs
from .openai_client import make_client, named_errors
from .openai_server import ENDPOINTS, Dialect, Reply, detect_kind, dialect_for, parse_answer, pick_option
from .usage import Prices, UsageMeter

log = logging.getLogger(__name__)

BYTES_PER_TOKEN_ESTIMATE = 3  # over-counts English (~4 bytes/token): texts are cut early, not overflowed
PROBE_PROMPT = "Answer:"
SOURCES = {"logprobs": "top_logprobs", "votes": "votes"}


def estimate_tokens(text: str) -> int:
    """Token count when the server does not expose its tokenizer (OpenAI, Ollama)."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)


def model_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "openai-compatible"


@dataclass(frozen=True)
class Server:
    """What the first use learned about the server (kind, model, tokenizer, logprobs)."""

    dialect: Dialect
    model: str
    bos_tokens: int | None  # tokens the tokenizer adds to any text; None = no exact tokenizer
    capabilities: Capabilities


class OpenAICompatEngine:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._client = make_client(settings.openai_base_url, settings.openai_api_key,
                                   timeout_s=settings.openai_timeout_s, max_retries=settings.openai_max_retries)
        self._root = re.sub(r"/v1$", "", settings.openai_base_url.rstrip("/"))
        self.model_id = model_slug(settings.llm_model)
        self.usage = UsageMeter(Prices(settings.llm_price_per_1k_prompt, settings.llm_price_per_1k_completion))
        self._slots = threading.BoundedSemaphore(settings.openai_concurrency)  # per process, all requests
        self._probe_lock = threading.Lock()
        self._server: Server | None = None
        self._count = lru_cache(maxsize=8192)(self._count_uncached)

    # --- protocol ---------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self.server().capabilities

    def count_tokens(self, text: str) -> int:
        server = self.server()
        if server.bos_tokens is None:
            return estimate_tokens(text)
        return self._count(text)

    def score(self, prefix: str, item: str, branches: Sequence[Branch]) -> list[np.ndarray]:
        server = self.server()
        out = []
        for branch in branches:
            self._check_answers(server, branch.continuations)
            answers = server.dialect.answers(branch.continuations)
            prompt = prefix + item + branch.suffix
            if server.capabilities.probability_source == "votes":
                out.append(self._votes(server, prompt, answers))
            else:
                out.append(self._next_token(server, prompt, answers))
        return out

    def generate(self, prompt: str, max_tokens: int = 8) -> str:
        """Greedy free text (only for the naive baseline that `eval --simulate` compares with)."""
        server = self.server()
        return self._request(server.dialect, server.model, prompt, max_tokens=max_tokens, temperature=0.0,
                             extra={"stop": ["\n"]}).text

    def choose(self, prefix: str, item: str, options: Sequence[str], *, max_tokens: int) -> str | None:
        """One of `options` after prefix + item, greedy, forced with the server kind's own mechanism
        (GBNF `grammar`, vLLM `choice`, a json_schema `enum`: openai_server.py), or None when the
        answer is none of them (a generic server is not constrained, its answer only validated).
        `max_tokens` is what the longest option takes; a JSON answer gets room for its wrapping.
        Which option is picked, not its log_prob (a grammar's is no probability), is the answer."""
        server = self.server()
        kept, constraint = server.dialect.option_constraint(options)
        if not kept:
            raise EngineError("there is no option to choose from")
        if len(kept) < len(options):
            log.warning("the LLM server's %s kind accepts %d of %d options; the first are kept",
                        server.dialect.kind, len(kept), len(options))
        reply = self._request(server.dialect, server.model, prefix + item,
                              max_tokens=max_tokens + constraint.max_tokens, temperature=0.0, extra=constraint.kwargs)
        chosen = pick_option(reply.text, constraint.answer_format, kept)
        if chosen is None:
            log.debug("the LLM server answered %r, none of %d options", reply.text[:60], len(kept))
        return chosen

    def rationale(self, prefix: str, item: str, *, max_tokens: int, temperature: float = 0.0, seed: int = 0) -> str:
        """Free text after prefix + item up to a newline: reason-then-select's rationale (the
        labels are then scored after it like any item)."""
        server = self.server()
        return self._request(server.dialect, server.model, prefix + item, max_tokens=max_tokens,
                             temperature=temperature, seed=seed, extra={"stop": ["\n"]}).text

    # --- server discovery ---------------------------------------------------------------------------

    def server(self) -> Server:
        """Probe the server once (kind, model, tokenizer, logprobs); retried on the next use if it fails."""
        if self._server is None:
            with self._probe_lock:
                if self._server is None:
                    self._server = self._probe()
        return self._server

    def _errors(self, where: str):
        s = self._settings
        return named_errors(f"{where} at {s.openai_base_url}", retries=s.openai_max_retries,
                            timeout_s=s.openai_timeout_s)

    def _probe(self) -> Server:
        s = self._settings
        try:
            with self._errors("GET /models"):
                models = list(self._client.models.list())
        except UpstreamError as exc:
            if not isinstance(exc.__cause__, openai.NotFoundError):
                raise
            models = []  # a server without /v1/models: kind and model must then be configured
        kind = s.openai_server_kind
        if kind == "auto":
            kind = detect_kind(s.openai_base_url, [getattr(m, "owned_by", "") or "" for m in models])
        dialect = dialect_for(kind, s.openai_endpoint)
        model = s.llm_model or (models[0].id if models else "")
        if not model:
            raise UpstreamError("the LLM server lists no model: set LLM_MODEL", field="LLM_MODEL")
        served = next((m for m in models if m.id == model), None)
        max_context = int(getattr(served, "max_model_len", None) or s.llm_n_ctx)  # vLLM reports it
        bos = self._tokenizer_offset(dialect, model)
        source = SOURCES.get(s.openai_probabilities) or self._probe_logprobs(dialect, model)
        capabilities = Capabilities(
            exact_logprobs=False,
            max_context=max_context,
            next_token_only=True,
            exact_token_counts=bos is not None,
            parallel_requests=s.openai_concurrency,
            probability_source=source,
        )
        log.info("LLM server %s: kind=%s endpoint=%s model=%s tokenizer=%s probabilities=%s context=%d",
                 s.openai_base_url, kind, dialect.endpoint, model, "exact" if bos is not None else "estimated",
                 source, max_context)
        return Server(dialect, model, bos, capabilities)

    def _tokenize(self, dialect: Dialect, model: str, text: str) -> list:
        tokenizer = dialect.tokenizer
        with self._slots, self._errors(f"POST {tokenizer.path}"):
            body = self._client.post(self._root + tokenizer.path, cast_to=object, body=tokenizer.body(model, text))
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            raise UpstreamError(f"{tokenizer.path} answered without a `tokens` list")
        return tokens

    def _tokenizer_offset(self, dialect: Dialect, model: str) -> int | None:
        """Tokens the server's tokenizer adds to any text (llama.cpp: BOS), or None without one."""
        if dialect.tokenizer is None:
            return None
        try:
            return len(self._tokenize(dialect, model, ""))
        except UpstreamError as exc:
            if exc.status == 503:
                raise
            log.warning("no usable tokenizer at %s (%s); token counts are estimated", dialect.tokenizer.path, exc)
            return None

    def _probe_logprobs(self, dialect: Dialect, model: str) -> str:
        """One tiny request with logprobs: does this server return them?"""
        try:
            reply = self._request(dialect, model, PROBE_PROMPT, max_tokens=1, temperature=0.0,
                                  top_logprobs=dialect.top_logprobs)
        except UpstreamError as exc:
            if exc.status == 502 and "logprob" in exc.message.lower():  # e.g. a model that refuses them (400)
                log.warning("the LLM server refuses logprobs (%s): probabilities from votes", exc.message)
                return "votes"
            raise
        if not reply.top:
            log.warning("the LLM server returns no logprobs: probabilities from %d votes per item",
                        self._settings.openai_votes)
        return "top_logprobs" if reply.top else "votes"

    def _count_uncached(self, text: str) -> int:
        server = self.server()
        return max(0, len(self._tokenize(server.dialect, server.model, text)) - (server.bos_tokens or 0))

    # --- scoring --------------------------------------------------------------------------------------

    def _check_answers(self, server: Server, continuations: Sequence[str]) -> None:
        keys = [answer_key(c) for c in continuations]
        if len(set(keys)) != len(keys) or not all(keys):
            raise EngineError(f"allowed answers must be distinct and non-empty: {list(continuations)}")
        if server.bos_tokens is not None:
            multi = [c for c in continuations if self.count_tokens(c) != 1]
            if multi:
                raise EngineError(f"answers {multi} are not single tokens: this engine needs letter codes")

    def _request(self, dialect: Dialect, model: str, prompt: str, *, max_tokens: int, temperature: float,
                 top_logprobs: int = 0, seed: int | None = None, extra: dict | None = None) -> Reply:
        kwargs: dict = {"max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            kwargs["seed"] = seed
        with self._slots, self._errors(f"POST /{dialect.endpoint.replace('chat', 'chat/completions')}"):
            reply = ENDPOINTS[dialect.endpoint](self._client, model, prompt, top_logprobs=top_logprobs,
                                                extra=extra or {}, **kwargs)
        self.usage.record(reply.prompt_tokens, reply.completion_tokens)
        return reply

    def _next_token(self, server: Server, prompt: str, answers: Sequence[str]) -> np.ndarray:
        k = server.dialect.top_logprobs
        reply = self._request(server.dialect, server.model, prompt, max_tokens=1, temperature=0.0, top_logprobs=k)
        if not reply.top:
            raise UpstreamError("the LLM server sent no logprobs although it did when probed; "
                                "set OPENAI_PROBABILITIES=votes")
        return allowed_logprobs(reply.top, answers, k)

    def _votes(self, server: Server, prompt: str, answers: Sequence[str]) -> np.ndarray:
        constraint = server.dialect.constraint(answers)
        texts = [
            self._request(server.dialect, server.model, prompt, max_tokens=constraint.max_tokens, temperature=1.0,
                          seed=seed, extra=constraint.kwargs).text
            for seed in range(self._settings.openai_votes)
        ]
        parsed = [parse_answer(t, constraint.answer_format) for t in texts]
        allowed = {answer_key(a) for a in answers}
        invalid = [t for t, p in zip(texts, parsed) if p is None or answer_key(p) not in allowed]
        if invalid:
            log.warning("%d of %d sampled answers are not allowed and were dropped, e.g. %r",
                        len(invalid), len(texts), invalid[0][:40])
        try:
            return vote_logprobs(parsed, answers)
        except ValueError as exc:
            raise UpstreamError(f"{exc} (e.g. {texts[0][:40]!r})") from None
