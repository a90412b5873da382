"""What differs between OpenAI-compatible servers: which one it is, how to constrain an answer to
the allowed set, whether it exposes its tokenizer, and how many top log-probs it returns.

Everything here is a table keyed by server kind (no if/elif over providers). The facts come from
../shared/docs/openai-compatible-servers.md (llama-cpp-python 0.3.36 measured on this machine;
OpenAI, vLLM and Ollama as their docs state):

| kind     | detected by (/v1/models)     | constrained answer                          | tokenizer            | top-k |
|----------|------------------------------|---------------------------------------------|----------------------|-------|
| llamacpp | owned_by "me" / "llamacpp"   | `grammar` (GBNF) body field                 | POST /extras/tokenize| 20    |
| vllm     | owned_by "vllm"              | `structured_outputs: {"choice": [...]}`     | POST /tokenize       | 20    |
| openai   | host *.openai.com, owned_by "openai"/"system" | chat `response_format` json_schema enum | none        | chat 20, completions 5 |
| ollama   | owned_by "library"           | chat `response_format` json_schema enum     | none                 | 20    |
| generic  | anything else (auto only)    | none: answers are validated, invalid ones dropped | none           | 5     |

The same mechanisms pick one line of an explicit option set for entity spans
(`Dialect.option_constraint`; labeling/spans.py builds the set): a GBNF alternation, a vLLM
`choice`, a json_schema `enum` cut to OpenAI's limits; a kind without one stops at the line's end
and its answer is only validated (`pick_option`).

llama-cpp-python answers HTTP 500 to the OpenAI `json_schema` response format and its process dies
on an invalid GBNF grammar, so each kind gets only what it accepts, and grammars are built only
from escaped label/code text (`gbnf_choice`).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from urllib.parse import urlsplit

import numpy as np

from ..errors import UpstreamError

KINDS = ("openai", "vllm", "llamacpp", "ollama", "generic")

# /v1/models `owned_by` → server kind. llama-cpp-python answers "me", llama.cpp's llama-server
# "llamacpp", vLLM "vllm", Ollama "library" (its model namespace), OpenAI "openai"/"system".
OWNED_BY = {
    "me": "llamacpp",
    "llamacpp": "llamacpp",
    "vllm": "vllm",
    "library": "ollama",
    "ollama": "ollama",
    "openai": "openai",
    "system": "openai",
    "openai-internal": "openai",
}


def detect_kind(base_url: str, owners: Sequence[str]) -> str:
    """OPENAI_SERVER_KIND=auto: the OpenAI API by its host, else the first known `owned_by` of
    /v1/models, else "generic" (the plain protocol on /v1/completions, no extensions)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "openai.com" or host.endswith(".openai.com"):
        return "openai"
    for owner in owners:
        kind = OWNED_BY.get(str(owner).strip().lower())
        if kind:
            return kind
    return "generic"


# --- constrained answers (vote requests) -------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """Extra request arguments that force the answer into the allowed set, and how to read it."""

    kwargs: dict = field(default_factory=dict)
    answer_format: str = "text"  # "text": the generated text is the answer; "json": {"answer": ...}
    max_tokens: int = 4  # a grammar may emit " " and "A" separately (measured), so not 1


def gbnf_literal(text: str) -> str:
    """A GBNF string literal for any text: everything but ASCII letters, digits and space is
    written as a \\u/\\U escape, so no label can end the literal or inject grammar syntax."""
    if not text:
        raise ValueError("an allowed answer is empty")
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == " "):
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def gbnf_choice(choices: Sequence[str]) -> str:
    """`root ::= "a" | "b"`: built only from label/code text, escaped (never from user grammar)."""
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices)


def _grammar(choices: Sequence[str]) -> Constraint:
    return Constraint({"extra_body": {"grammar": gbnf_choice(choices)}})


def _vllm_choice(choices: Sequence[str]) -> Constraint:
    return Constraint({"extra_body": {"structured_outputs": {"choice": list(choices)}}})


def _json_enum(choices: Sequence[str]) -> Constraint:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(choices)}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    return Constraint(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}},
        answer_format="json",
        max_tokens=16,
    )


def _unconstrained(choices: Sequence[str]) -> Constraint:
    return Constraint()


CONSTRAINTS: dict[tuple[str, str], Callable[[Sequence[str]], Constraint]] = {
    ("llamacpp", "completions"): _grammar,
    ("llamacpp", "chat"): _grammar,
    ("vllm", "completions"): _vllm_choice,
    ("vllm", "chat"): _vllm_choice,
    ("openai", "chat"): _json_enum,
    ("ollama", "chat"): _json_enum,
}


# OpenAI's documented limits of the enums of a strict schema: at most 1000 values, and when there
# are more than 250 at most 15,000 characters in all. Kinds without a limit: None.
ENUM_LIMITS = (1000, 250, 15_000)
OPTION_LIMITS = {_json_enum: ENUM_LIMITS}


def fit_options(options: Sequence[str], limits: tuple[int, int, int] | None) -> tuple[str, ...]:
    """The head of `options` that a mechanism with (most values, values beyond which the characters
    count, most characters) limits accepts; all of them without limits."""
    options = tuple(options)
    if limits is None:
        return options
    most, many, chars = limits
    kept = options[:most]
    if len(kept) > many:
        within = sum(1 for total in accumulate(map(len, kept)) if total <= chars)
        kept = kept[: max(within, many)]
    return kept


def parse_answer(text: str, answer_format: str) -> str | None:
    """The answer a constrained (or not) generation gave, or None if it is unreadable."""
    if answer_format == "json":
        try:
            value = json.loads(text).get("answer")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return text


def pick_option(text: str, answer_format: str, options: Sequence[str]) -> str | None:
    """The option an answer is, compared with surrounding whitespace stripped (a stop sequence
    drops the line's newline), spelled as in `options`; None if it is none of them."""
    answer = parse_answer(text, answer_format)
    if answer is None:
        return None
    return {o.strip(): o for o in reversed(options)}.get(answer.strip())


# --- tokenizers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokenizer:
    """A tokenize route on the server root (not under /v1); the reply has a `tokens` list."""

    path: str
    body: Callable[[str, str], dict]  # (model, text) → JSON body


TOKENIZERS = {
    "llamacpp": Tokenizer("/extras/tokenize", lambda model, text: {"input": text}),
    "vllm": Tokenizer("/tokenize", lambda model, text: {"model": model, "prompt": text, "add_special_tokens": False}),
}


# --- dialect: everything the engine needs to know about one server ------------------------------

DEFAULT_ENDPOINT = {"openai": "chat"}  # OpenAI's current models are chat-only; others: completions
TOP_LOGPROBS = {("openai", "completions"): 5, ("generic", "completions"): 5, ("generic", "chat"): 5}


@dataclass(frozen=True)
class Dialect:
    kind: str
    endpoint: str  # completions | chat
    top_logprobs: int
    tokenizer: Tokenizer | None

    def constraint(self, choices: Sequence[str]) -> Constraint:
        return CONSTRAINTS.get((self.kind, self.endpoint), _unconstrained)(choices)

    def option_constraint(self, options: Sequence[str]) -> tuple[tuple[str, ...], Constraint]:
        """One answer from an explicit, finite option set (a line of a span list): the options cut
        to what the kind's mechanism accepts (the head of the list is kept, so put what matters
        first) and the constraint that forces one of them. A kind without a mechanism (generic,
        OpenAI's completions) is asked to stop at the line's end; its answer is only validated."""
        build = CONSTRAINTS.get((self.kind, self.endpoint))
        if build is None:
            return tuple(options), Constraint({"stop": ["\n"]})
        kept = fit_options(options, OPTION_LIMITS.get(build))
        return kept, build(kept)

    def answers(self, continuations: Sequence[str]) -> tuple[str, ...]:
        """The allowed answers as this endpoint writes them: a completions model continues the
        prompt (" A"), a chat model starts a reply ("A")."""
        return tuple(continuations) if self.endpoint == "completions" else tuple(c.strip() for c in continuations)


def dialect_for(kind: str, endpoint: str = "auto") -> Dialect:
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    endpoint = DEFAULT_ENDPOINT.get(kind, "completions") if endpoint == "auto" else endpoint
    return Dialect(kind, endpoint, TOP_LOGPROBS.get((kind, endpoint), 20), TOKENIZERS.get(kind))


# --- one request, either endpoint ---------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    text: str
    top: dict[str, float] | None  # the first generated position's top-k; None when the server sent none
    prompt_tokens: int
    completion_tokens: int


def _usage(response) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def _first_choice(response):
    choices = getattr(response, "choices", None)
    if not choices:
        raise UpstreamError("the LLM server answered without any choice")
    return choices[0]


def _completions(client, model: str, prompt: str, *, top_logprobs: int, extra: dict, **kwargs) -> Reply:
    if top_logprobs:
        kwargs["logprobs"] = top_logprobs
    response = client.completions.create(model=model, prompt=prompt, **kwargs, **extra)
    choice = _first_choice(response)
    logprobs = getattr(choice, "logprobs", None)
    tops = getattr(logprobs, "top_logprobs", None) if logprobs is not None else None
    top = {str(t): float(v) for t, v in (tops[0] or {}).items() if v is not None} if tops else None
    return Reply(choice.text or "", top or None, *_usage(response))


def _chat(client, model: str, prompt: str, *, top_logprobs: int, extra: dict, **kwargs) -> Reply:
    if top_logprobs:
        kwargs.update(logprobs=True, top_logprobs=top_logprobs)
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **kwargs, **extra
    )
    choice = _first_choice(response)
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    top = None
    if content:
        merged: dict[str, float] = {}
        for entry in content[0].top_logprobs or []:  # the same text can come from two token ids
            merged[entry.token] = float(np.logaddexp(merged.get(entry.token, -np.inf), entry.logprob))
        top = merged or None
    return Reply(choice.message.content or "", top, *_usage(response))


ENDPOINTS = {"completions": _completions, "chat": _chat}
