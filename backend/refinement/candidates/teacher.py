"""A teacher LLM that reads misclassified examples and proposes new instructions.

Two teachers, one interface (`propose(brief, n, seed) -> list[str]`):

- `LocalTeacher`: the local llama.cpp model (the default). The embedded model is a tiny *base*
  model, so it gets a completion-style meta-prompt (a document with a worked example that it
  continues, up to the proposal's closing quote), not a chat; diversity comes from sampling each
  proposal with its own seed and temperature, and from starting it with a different label.
- `OpenAITeacher`: any OpenAI-compatible server (TEACHER_BASE_URL + TEACHER_MODEL), through chat
  completions with `n` proposals per request (servers that ignore `n` get more requests).

Whatever a teacher writes goes through `sanitize` before it is scored: a garbage proposal is
dropped, never an error. A teacher that cannot be reached raises a named error (backend/errors.py)
that the search turns into a skipped candidate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from ...labeling.prompt import clean_text

MIN_INSTRUCTION_CHARS = 20  # shorter than "Classify the sentiment." says nothing the default does not
MAX_INSTRUCTION_CHARS = 600  # ~150 tokens: the instructions sit in every prompt, demos and text must fit too
MIN_LETTER_SHARE = 0.6  # below this it is numbers, markup or repeated punctuation, not an instruction
EXAMPLE_CHARS = 200  # each misclassified text shown to the teacher is clipped to this
MAX_PROPOSAL_TOKENS = 120  # a little more than MAX_INSTRUCTION_CHARS in English
TEACHER_TIMEOUT_S = 120.0  # a generation of ~100 tokens, not a one-token scoring request

# Lines the labeling prompts are built from ("Text: …", "Label: …", "Labels: …", "Answer: …", and a
# span prompt's "Names:" and "Types:"):
# an instruction containing one could fake a demonstration or an answer inside the prompt.
_PROMPT_STRUCTURE = re.compile(r"\b(?:text|labels?|answer|names|types)\s*:", re.IGNORECASE)
# What a model writes around the instruction itself: list markers, quotes, a heading.
_LEADING_NOISE = re.compile(r"^(?:[-*•\d.)\s\"'“”‘’]+|(?:new |improved |better )?instructions?\s*:\s*)+",
                            re.IGNORECASE)
_TRAILING_QUOTES = re.compile(r"[\s\"'“”‘’]+$")
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


@dataclass(frozen=True)
class Mistake:
    text: str
    gold: str
    predicted: str


@dataclass(frozen=True)
class TeacherBrief:
    """What the teacher reads: the task, the instructions in use, and some of their mistakes."""

    topic: str
    labels: tuple[str, ...]
    instructions: str
    mistakes: tuple[Mistake, ...]
    tried: tuple[tuple[str, float], ...] = ()  # the rest of the beam: (instructions, minibatch macro-F1)
    spans: bool = False  # the task marks names in a text and types them (a <Labels> control), not sorts texts


class Teacher(Protocol):
    name: str
    calls: int  # LLM generations (local) or requests (server) made so far: the job's budget counts them

    def propose(self, brief: TeacherBrief, n: int, *, seed: int = 0) -> list[str]:
        """Up to `n` sanitised, distinct instructions (fewer when some were garbage)."""


def sanitize(raw: str, labels: Sequence[str] = ()) -> str | None:
    """One proposal made safe to put in a prompt, or None when it cannot be.

    Whitespace is collapsed (the labeling prompt is line-structured); markup, list markers, quotes
    and an "Instruction:" heading are stripped. Rejected: too short or too long, mostly
    non-letters, a sentence said twice (a small model looping), anything that looks like the
    prompt's own "Text:"/"Label:" lines, and, when `labels` are given, a text naming none of them
    (an instruction for some other task).
    """
    text = clean_text(_MARKUP.sub(" ", raw or ""))
    text = _TRAILING_QUOTES.sub("", _LEADING_NOISE.sub("", text))
    if not MIN_INSTRUCTION_CHARS <= len(text) <= MAX_INSTRUCTION_CHARS:
        return None
    if sum(ch.isalpha() for ch in text) < MIN_LETTER_SHARE * len(text):
        return None
    if _PROMPT_STRUCTURE.search(text):
        return None
    sentences = [s.casefold() for s in _SENTENCE_END.split(text) if s]
    if len(set(sentences)) < len(sentences):
        return None
    if labels and not any(re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE) for label in labels):
        return None
    return text


def sanitize_all(raws: Iterable[str], *, labels: Sequence[str] = (), exclude: Iterable[str] = (),
                 limit: int | None = None) -> list[str]:
    """Sanitised proposals in order, without duplicates (case-insensitive) or already known texts."""
    seen = {t.casefold() for t in exclude}
    out: list[str] = []
    for raw in raws:
        text = sanitize(raw, labels)
        if text is None or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        out.append(text)
        if limit is not None and len(out) >= limit:
            break
    return out


def _quoted(text: str) -> str:
    text = clean_text(text)
    if len(text) > EXAMPLE_CHARS:
        text = text[: EXAMPLE_CHARS - 1].rstrip() + "…"
    return '"' + text.replace('"', "'") + '"'


def describe(brief: TeacherBrief) -> str:
    """The brief as prose, shared by both meta-prompts. Mistakes never use the "Text:"/"Label:"
    layout of the labeling prompt, so a teacher continuing them cannot produce a fake demo."""
    labels = ", ".join(brief.labels)
    task = (f"Task: find the names in texts and give each name one type: {labels}." if brief.spans
            else f"Task: sort texts by {brief.topic}, one of: {labels}.")
    lines = [task, f"Old instruction: {_quoted(brief.instructions)}"]
    if brief.tried:
        lines.append("Other instructions tried (score out of 1):")
        lines += [f"- {_quoted(text)} ({score:.2f})" for text, score in brief.tried]
    if brief.mistakes:
        lines.append("Mistakes made with the old instruction:")
        lines += [f"- {_quoted(m.text)} was marked {m.predicted}, but it is {m.gold}." for m in brief.mistakes]
    return "\n".join(lines)


# A worked example in another domain: a base model imitates a document far better than it follows
# a request, and the quote marks show where a proposal ends.
_WORKED_EXAMPLE = TeacherBrief(
    topic="topic", labels=("sports", "politics"), instructions="Classify the topic of each text.",
    mistakes=(Mistake("The senate voted on the new stadium budget.", "politics", "sports"),
              Mistake("The coach was fired after the third loss.", "sports", "politics")),
)
_WORKED_ANSWER = ("Choose politics when the text is about governments, elections, laws or public money, even "
                  "if a sport is mentioned; choose sports when it is about games, teams, players or results.")


_WORKED_SPAN_EXAMPLE = TeacherBrief(
    topic="names", labels=("person", "place"), instructions="List the names in each text that are one of: person, "
    "place. One per line, copied from the text; then give each name its type.",
    mistakes=(Mistake("Jordan", "person", "place"), Mistake("the river", "not a name", "place"),
              Mistake("Lake Geneva", "place", "not a name")),
    spans=True,
)
_WORKED_SPAN_ANSWER = ("Choose person when the name is someone's, even a name that is also a country's; choose place "
                       "when it names a city, country, lake or building, never for a common word like the river.")


def worked_example(brief: TeacherBrief) -> tuple[TeacherBrief, str]:
    """The worked example of the brief's kind of task, and its better instruction."""
    return (_WORKED_SPAN_EXAMPLE, _WORKED_SPAN_ANSWER) if brief.spans else (_WORKED_EXAMPLE, _WORKED_ANSWER)


def primer(brief: TeacherBrief, i: int) -> str:
    """How proposal `i` starts: with a label of this task (each in turn), so a small model writes
    about this task's labels instead of retelling the worked example."""
    return f"Choose {brief.labels[i % len(brief.labels)]} when" if brief.labels else ""


def retells_the_example(text: str, brief: TeacherBrief) -> bool:
    """A proposal naming the worked example's labels (not this task's) copied the example."""
    foreign = [label for label in worked_example(brief)[0].labels if label not in brief.labels]
    return any(re.search(rf"\b{label}\b", text, re.IGNORECASE) for label in foreign)


def completion_prompt(brief: TeacherBrief, start: str = "") -> str:
    """A document a base model continues with one improved instruction (after `start`), ended by
    its closing quote."""
    example, answer = worked_example(brief)
    return (
        "Each old instruction below is rewritten into a better one that explains what every label "
        "means, so that the mistakes are not made again.\n\n"
        f'{describe(example)}\nBetter instruction: "{answer}"\n\n'
        f'{describe(brief)}\nBetter instruction: "{start}'
    )


def chat_messages(brief: TeacherBrief) -> list[dict]:
    role = "a named-entity tagger" if brief.spans else "a text classifier"
    return [
        {"role": "system", "content": f"You improve the instructions of {role}."},
        {"role": "user", "content": (
            f"{describe(brief)}\n\n"
            f"Write one improved instruction that explains how to tell {', '.join(brief.labels)} apart, "
            f"so that such mistakes are avoided. Reply with the instruction only: one paragraph of at "
            f"most {MAX_INSTRUCTION_CHARS // 6} words, no examples, no 'Text:' or 'Label:' lines."
        )},
    ]


class LocalTeacher:
    """The local llama.cpp model as teacher: one sampled completion per proposal."""

    name = "local"
    TEMPERATURES = (0.7, 0.9, 1.1)  # cycled over the proposals of a round, each with its own seed

    def __init__(self, engine):
        self.engine = engine  # needs `complete(prompt, *, max_tokens, temperature, seed, stop)`
        self.calls = 0

    def propose(self, brief: TeacherBrief, n: int, *, seed: int = 0) -> list[str]:
        raws = []
        for i in range(n):
            self.calls += 1
            start = primer(brief, i)
            raws.append(start + self.engine.complete(
                completion_prompt(brief, start), max_tokens=MAX_PROPOSAL_TOKENS,
                temperature=self.TEMPERATURES[i % len(self.TEMPERATURES)], seed=seed * 1000 + i, stop=['"', "\n"]))
        raws = [raw for raw in raws if not retells_the_example(raw, brief)]
        return sanitize_all(raws, labels=brief.labels, exclude=[brief.instructions], limit=n)


class OpenAITeacher:
    """Any OpenAI-compatible chat server as teacher (a stronger model than the one labeling)."""

    name = "openai"
    TEMPERATURE = 1.0

    def __init__(self, base_url: str, model: str, api_key: str = "", *, max_retries: int = 2,
                 timeout_s: float = TEACHER_TIMEOUT_S, max_tokens: int = 2 * MAX_PROPOSAL_TOKENS):
        from ...engines.openai_client import make_client

        self.model, self.max_tokens = model, max_tokens  # a chat model may say a word or two first
        self.client = make_client(base_url, api_key, timeout_s=timeout_s, max_retries=max_retries)
        self.calls = 0
        self._retries, self._timeout_s = max_retries, timeout_s

    def propose(self, brief: TeacherBrief, n: int, *, seed: int = 0) -> list[str]:
        """`n` choices per request; a server that ignores `n` (llama.cpp) is asked again with the
        next seed, at most `n` requests in all."""
        from ...engines.openai_client import named_errors

        raws: list[str] = []
        for attempt in range(n):
            self.calls += 1
            with named_errors("teacher", retries=self._retries, timeout_s=self._timeout_s):
                response = self.client.chat.completions.create(
                    model=self.model, messages=chat_messages(brief), n=n - len(raws),
                    temperature=self.TEMPERATURE, max_tokens=self.max_tokens, seed=seed * 1000 + attempt)
            raws += [choice.message.content or "" for choice in response.choices]
            if len(raws) >= n:
                break
        return sanitize_all(raws, labels=brief.labels, exclude=[brief.instructions], limit=n)


def build_teacher(settings, engine) -> Teacher | None:
    """TEACHER_BASE_URL + TEACHER_MODEL → that server; else the local engine if it can generate;
    else None (LLM_BACKEND=openai without a teacher: the rewrite candidate is skipped)."""
    if settings.teacher_enabled:
        return OpenAITeacher(settings.teacher_base_url, settings.teacher_model, settings.teacher_api_key,
                             max_retries=settings.openai_max_retries)
    if callable(getattr(engine, "complete", None)):
        return LocalTeacher(engine)
    return None
