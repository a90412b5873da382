"""Entity spans for a `<Labels>` control: mentions written under a grammar, then typed by score.

Two steps, each where it is strong. The engine writes the mentions one line at a time, under a
guidance grammar that admits only a run of whole words of the text or the end of the list, so
every mention is real text (a model server, which takes no guidance grammar, picks each line from
the explicit set of such lines instead, `line_options`, forced with its own mechanism). Then each
distinct mention is scored like a single choice among the control's labels and "none", with the
engine's own log-likelihoods (a grammar's `log_prob` is not a probability; a server scores each
answer by its first word, `scored_answers`, or by a letter code where first words do not tell
the labels apart, `type_words`): the span gets the most probable label and that
label's probability as its score, and a mention whose "none" outweighs every label is dropped.
Every whole-word occurrence of a kept mention in the task's own text is marked (offsets into the
text as Label Studio stores it); where two spans overlap the more probable one is kept.
A version may carry a typing head (labeling.span_typing) learnt from annotations, which re-types
(or drops) the mentions after the LLM has typed them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..engines.base import Branch
from ..errors import EngineError, UpstreamError
from .label_config import SpanControl
from .prompt import CODES, clean_text, clip_demo, shown_labels
from .scoring import CONTEXT_MARGIN_TOKENS
from .span_typing import TypingHead, typing_features

NONE = "none"
MAX_MENTIONS = 8  # lines of the list the model may write per text
MENTION_TOKENS = 24  # tokens one line may take ("- " + the mention + newline)
LIST_END = "Types:"  # the line that closes the list and opens the typing step
MAX_RUN_WORDS = 6  # on a model server a listed line is a run of 1..this many whole words of the text


@dataclass(frozen=True)
class SpanDemo:
    """A labelled text shown to the model: its entities as (mention, label), in text order."""

    text: str
    entities: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SpanPrompt:
    """What a model version changes for a <Labels> control. `nearest` > 0 shows each text the
    `nearest` texts of `pool` most similar to it (MiniLM cosine), as the choices' nearest demos do."""

    name: str = "v0"
    instructions: str | None = None
    demos: tuple[SpanDemo, ...] = ()
    pool: tuple[SpanDemo, ...] = ()
    nearest: int = 0
    # (a, b): a span's score s is served as sigmoid(a·logit(s) + b), fitted on ground truth; None: raw
    calibration: tuple[float, float] | None = None
    typing: TypingHead | None = None  # re-types the LLM's mentions (labeling.span_typing); None: the LLM's types

    def calibrated(self, score: float) -> float:
        if self.calibration is None:
            return score
        a, b = self.calibration
        s = min(max(score, 1e-6), 1 - 1e-6)
        return float(1.0 / (1.0 + np.exp(-(a * np.log(s / (1 - s)) + b))))

    def to_dict(self) -> dict:
        demo = lambda d: {"text": d.text, "entities": [list(e) for e in d.entities]}  # noqa: E731
        return {"name": self.name, "instructions": self.instructions, "demos": [demo(d) for d in self.demos],
                "pool": [demo(d) for d in self.pool], "nearest": self.nearest,
                "calibration": list(self.calibration) if self.calibration else None,
                **({"typing": self.typing.to_dict()} if self.typing else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "SpanPrompt":
        demos = lambda rows: tuple(SpanDemo(d["text"], tuple((m, label) for m, label in d["entities"]))  # noqa: E731
                                   for d in rows or ())
        return cls(name=data.get("name", "v0"), instructions=data.get("instructions"), demos=demos(data.get("demos")),
                   pool=demos(data.get("pool")), nearest=int(data.get("nearest") or 0),
                   calibration=tuple(float(x) for x in data["calibration"]) if data.get("calibration") else None,
                   typing=TypingHead.from_dict(data["typing"]) if data.get("typing") else None)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str
    label: str
    score: float
    probabilities: tuple[float, ...]  # per label of the control, then "none"


def default_span_instructions(control: SpanControl) -> str:
    kinds = ", ".join(shown_labels(control.labels).values())
    return (f"List the names in each text that are one of: {kinds}. One per line, copied from the text; "
            f"then give each name its type.")


@dataclass(frozen=True)
class TypeWords:
    """How the typing lines write each label and "no entity": the labels as words, or, on a model
    server that scores an answer by its first token where the words do not start with distinct
    single tokens ("Product name", "Product type"), one letter each, explained by `key` on the line
    that opens the typing ("Types: A) Product name, B) …"). Not in the instructions: any line there
    about letters made the embedded model list no names at all."""

    labels: dict[str, str]
    none: str
    key: str = ""

    @property
    def types_line(self) -> str:
        return f"{LIST_END} {self.key}" if self.key else LIST_END

    def continuations(self, control: SpanControl) -> tuple[str, ...]:
        return tuple(f" {self.labels[label]}" for label in control.labels) + (f" {self.none}",)


def type_words(engine, control: SpanControl) -> TypeWords:
    """The control's type words for `engine`: letter codes only where its labels need them."""
    plain = TypeWords(shown_labels(control.labels), null_word(control))
    if not engine.capabilities.next_token_only:
        return plain
    try:
        scored_answers(engine, plain.continuations(control))
        return plain
    except EngineError:
        if len(control.labels) >= len(CODES):
            raise EngineError(f"control {control.name!r} has {len(control.labels)} labels; on a model server spans are "
                              f"typed by one letter each, for at most {len(CODES) - 1}", field="label_config") from None
    codes = dict(zip(control.labels, CODES))
    none = CODES[len(control.labels)]
    key = ", ".join(f"{codes[label]}) {plain.labels[label]}" for label in control.labels) + f", {none}) {plain.none}"
    return TypeWords(codes, none, key)


def _render_demo(demo: SpanDemo, words: TypeWords) -> str:
    """A demonstration, its text cut like a choice demo's and only the entities left in that cut."""
    text = clip_demo(demo.text)
    entities = [(clean_text(m), label) for m, label in demo.entities if clean_text(m) and clean_text(m) in text]
    mentions = "".join(f"- {m}\n" for m, _ in entities)
    types = "".join(f"{m}: {words.labels.get(label, label)}\n" for m, label in entities)
    return f"Text: {text}\nNames:\n{mentions}{words.types_line}\n{types}\n"


def fit_shown(engine, control: SpanControl, prefix: str, demos: str, shown: str, types_line: str) -> str:
    """The task text as shown, its head kept, cut so the longest list and typing item still fit the
    engine's context (a long document is read as far as it fits; offsets stay the raw text's)."""
    longest_label = max(engine.count_tokens(f" {w}") for w in shown_labels(control.labels).values())
    fixed = (engine.count_tokens(prefix) + engine.count_tokens(f"{demos}Text: \nNames:\n{types_line}\n")
             + (MAX_MENTIONS + 1) * (MENTION_TOKENS + 2) + longest_label + CONTEXT_MARGIN_TOKENS)
    budget = engine.capabilities.max_context - fixed
    if budget <= 0:
        raise EngineError("the span prompt's instructions and demonstrations alone do not fit the model's context",
                          field="LLM_N_CTX")
    n_tokens = engine.count_tokens(shown)
    while n_tokens > budget and shown:
        shown = shown[: max(0, int(len(shown) * budget / n_tokens * 0.95))]
        n_tokens = engine.count_tokens(shown)
    return shown


def render_prefix(control: SpanControl, prompt: SpanPrompt, words: TypeWords) -> str:
    """Instructions and demonstrations: shared by every text, so the engine caches them."""
    demos = "".join(_render_demo(d, words) for d in prompt.demos)
    return f"{prompt.instructions or default_span_instructions(control)}\n\n{demos}"


def list_grammar(shown: str) -> str:
    """One more line of the list: "- " and a run of whole words of the text, or the list's end."""
    from guidance import select, substring

    return select(["- " + substring(shown) + "\n", LIST_END]).ll_grammar()


def line_options(shown: str, max_words: int = MAX_RUN_WORDS) -> tuple[str, ...]:
    """Every line the list may go on with, as an explicit set for an engine that picks one (a
    model server): the list's end first, then "- " + each run of 1..`max_words` whole words of the
    text (from a word's start to a word's end, what lies between included) + "\n", each once,
    shorter runs first (a server that takes fewer options keeps the head). At most
    `max_words`·n + 1 lines for n words."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\w+", shown)]
    runs = dict.fromkeys(shown[words[i][0]: words[i + n - 1][1]]
                         for n in range(1, max_words + 1) for i in range(len(words) - n + 1))
    return (LIST_END, *(f"- {run}\n" for run in runs))


def _line_writer(engine, shown: str):
    """(prefix, item) → the next line of the list: under the guidance grammar where the engine
    generates under one (the embedded model), else the engine's pick from `line_options` (the list
    ends when a server's answer is none of them)."""
    if callable(getattr(engine, "constrained", None)):
        grammar = list_grammar(shown)
        return lambda prefix, item: engine.constrained(prefix, item, grammar, max_tokens=MENTION_TOKENS)
    options = line_options(shown)
    return lambda prefix, item: engine.choose(prefix, item, options, max_tokens=MENTION_TOKENS) or LIST_END


def scored_answers(engine, continuations: Sequence[str]) -> tuple[str, ...]:
    """The continuations as `engine` can score them. Whole, on an engine that scores sequences. On
    a next-token-only engine (a model server) each is cut to its first word (" creative-work" →
    " creative", "Types:" → "Types"), whose probability as the next token stands for the whole
    answer's; the cut answers must then be distinct and, where the server's tokenizer is exact,
    single tokens (EngineError otherwise)."""
    if not engine.capabilities.next_token_only:
        return tuple(continuations)
    firsts = []
    for c in continuations:
        m = re.match(r"\s*(\w+|\S)", c)
        firsts.append(c[: m.end()] if m else c)
    if len({f.strip() for f in firsts}) != len(firsts):
        raise EngineError(f"the answers {list(continuations)} do not start with distinct words, which a model "
                          "server must score them by", field="label_config")
    if engine.capabilities.exact_token_counts:
        multi = [f for f in firsts if engine.count_tokens(f) != 1]
        if multi:
            raise EngineError(f"the answers {list(continuations)} do not start with one token each ({multi} do not), "
                              "which a model server must score them by", field="label_config")
    return tuple(firsts)


def span_support(engine, control: SpanControl) -> str | None:
    """Why `engine` cannot predict `control`'s spans, or None when it can: it generates under a
    grammar (the embedded model), or picks a line from a set (a model server) and can score the
    list's end and the control's types (`scored_answers`). An unreachable server still raises."""
    if callable(getattr(engine, "constrained", None)):
        return None
    if not callable(getattr(engine, "choose", None)):
        return f"the engine {engine.model_id!r} cannot write under a grammar nor pick a line from a set"
    try:
        scored_answers(engine, ("-", LIST_END))
        scored_answers(engine, type_words(engine, control).continuations(control))
    except UpstreamError:
        raise
    except EngineError as exc:
        return f"on the engine {engine.model_id!r} {exc.message}"
    return None


def write_mentions(engine, prefix: str, shown: str, demos: str = "") -> list[tuple[str, float]]:
    """The mentions the model lists for one text (distinct, in the order written), each with the
    probability the model gave to writing one more line rather than ending the list there;
    `demos` are this text's own demonstrations, rendered, which go before it in the item."""
    write = _line_writer(engine, shown)
    list_branch = Branch("", scored_answers(engine, ("-", LIST_END)))
    head = f"{demos}Text: {shown}\nNames:\n"
    mentions: list[tuple[str, float]] = []
    for _ in range(MAX_MENTIONS):
        item = head + "".join(f"- {m}\n" for m, _ in mentions)
        line = write(prefix, item)
        if not line.startswith("- "):
            break  # the list's end, or nothing the grammar allows
        mention = line[2:].strip()
        if not mention or mention in {m for m, _ in mentions}:
            break  # a model that repeats itself has nothing more to list
        more, end = engine.score(prefix, item, [list_branch])[0]
        mentions.append((mention, float(1.0 / (1.0 + np.exp(end - more)))))
    return mentions


def null_word(control: SpanControl) -> str:
    """How the prompt says "no entity": "none", unless a label already reads so."""
    taken = {w.lower() for w in shown_labels(control.labels).values()}
    return NONE if NONE not in taken else "not a name"


def type_mentions(engine, control: SpanControl, prefix: str, shown: str, mentions: Sequence[str], words: TypeWords,
                  demos: str = "") -> np.ndarray:
    """P(label) for each mention, over the control's labels and "none" (rows sum to 1)."""
    if not mentions:
        return np.zeros((0, len(control.labels) + 1))
    continuations = scored_answers(engine, words.continuations(control))
    item = f"{demos}Text: {shown}\nNames:\n" + "".join(f"- {m}\n" for m in mentions) + f"{words.types_line}\n"
    logliks = engine.score(prefix, item, [Branch(f"{m}:", continuations) for m in mentions])
    rows = np.stack([np.asarray(x, dtype=np.float64) for x in logliks])
    rows = np.exp(rows - rows.max(axis=1, keepdims=True))
    return rows / rows.sum(axis=1, keepdims=True)


def occurrences(mention: str, text: str, *, ignore_case: bool = False) -> list[tuple[int, int]]:
    """Where `mention` (as the prompt showed it, whitespace collapsed) stands in the raw text, as
    whole words: "York" is not found inside "Yorkshire"."""
    parts = mention.split()
    if not parts:
        return []
    pattern = r"\s+".join(re.escape(p) for p in parts)
    if re.match(r"\w", parts[0]):
        pattern = r"(?<!\w)" + pattern
    if re.search(r"\w$", parts[-1]):
        pattern += r"(?!\w)"
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE if ignore_case else 0)]


def shown_spans(raw: str, spans: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, str]] | None:
    """Spans of the raw text → the same spans in clean_text(raw), the text ground truth is kept as.

    Each span is found again as the same occurrence (counted from the start) of its cleaned
    mention; None when one cannot be, so a gold item is never stored with entities missing."""
    shown = clean_text(raw)
    out = []
    for start, end, label in spans:
        piece = raw[start:end]
        start, end = start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())
        mention = clean_text(raw[start:end])
        before = [s for s, _ in _positions(mention, raw)]
        after = _positions(mention, shown)
        if start not in before or before.index(start) >= len(after):
            return None
        out.append((*after[before.index(start)], label))
    return out


def _positions(mention: str, text: str) -> list[tuple[int, int]]:
    """Every occurrence of `mention` in `text`, whitespace runs matching any whitespace, part-words too."""
    parts = mention.split()
    if not parts:
        return []
    return [(m.start(), m.end()) for m in re.finditer(r"\s+".join(re.escape(p) for p in parts), text)]


def spans_for(control: SpanControl, text: str, mentions: Sequence[tuple[str, float]], probs: np.ndarray) -> list[Span]:
    """Typed mentions → non-overlapping spans of `text`, the more probable kept where two overlap.

    A span's score is P(the model lists one more name there) × P(its label | the mention)."""
    candidates = []
    for (mention, listed), row in zip(mentions, probs):
        best = int(np.argmax(row[:-1]))
        if row[-1] > row[best]:
            continue  # more likely not an entity of any of the control's kinds
        for start, end in occurrences(mention, text):
            candidates.append(Span(start, end, text[start:end], control.labels[best], listed * float(row[best]),
                                   tuple(float(p) for p in row)))
    kept: list[Span] = []
    for span in sorted(candidates, key=lambda s: (-s.score, s.start - s.end, s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


@dataclass(frozen=True)
class Placement:
    """The LLM's pass over one text: the mentions it listed (each with P(listed)) and its type
    distribution for each (labels, then "none"). Kept apart from the spans so that a learning job
    can re-type the same pass in several ways without running the LLM again."""

    mentions: tuple[tuple[str, float], ...]
    probs: np.ndarray
    shown: str = ""


def place_mentions(engine, control: SpanControl, prompt: SpanPrompt, text: str,
                   task_demos: Sequence[SpanDemo] = ()) -> Placement:
    """The LLM's mentions of one raw task text and its types for them; `task_demos` are its
    nearest labelled texts, if any. They are shown when the model lists mentions, not when it
    types them: other texts' types made the typing worse, not better."""
    words = type_words(engine, control)
    prefix = render_prefix(control, prompt, words)
    demos = "".join(_render_demo(d, words) for d in task_demos)
    shown = fit_shown(engine, control, prefix, demos, clean_text(text), words.types_line)
    if not shown:
        return Placement((), np.zeros((0, len(control.labels) + 1)), shown)
    mentions = write_mentions(engine, prefix, shown, demos)
    typed = type_mentions(engine, control, prefix, shown, [m for m, _ in mentions], words)
    return Placement(tuple(mentions), typed, shown)


def placed_spans(control: SpanControl, prompt: SpanPrompt, text: str, placement: Placement,
                 embedder=None, features: np.ndarray | None = None) -> list[Span]:
    """The spans of a placement, re-typed by the prompt's typing head if it has one (on
    `features` of the mentions when given, else embedded with `embedder`), scores calibrated."""
    probs = _retyped(prompt, placement.probs, [m for m, _ in placement.mentions], placement.shown, embedder, features)
    return [replace(s, score=prompt.calibrated(s.score)) for s in spans_for(control, text, placement.mentions, probs)]


def _retyped(prompt: SpanPrompt, probs: np.ndarray, mentions: Sequence[str], shown: str, embedder=None,
             features: np.ndarray | None = None) -> np.ndarray:
    """The LLM's type distributions of `mentions`, re-typed by the prompt's typing head if it has one."""
    if prompt.typing is None or not len(mentions):
        return probs
    if features is None:
        if embedder is None:
            raise ValueError("a span prompt with a typing head needs an embedder")
        features = typing_features(embedder, prompt.typing.inputs, list(mentions), shown)
    return prompt.typing.apply(probs, features)


def extract_spans(engine, control: SpanControl, prompt: SpanPrompt, text: str,
                  task_demos: Sequence[SpanDemo] = (), embedder=None) -> list[Span]:
    """The spans of one raw task text (`place_mentions`, then `placed_spans`); `embedder` is
    needed only by a prompt with a typing head."""
    return placed_spans(control, prompt, text, place_mentions(engine, control, prompt, text, task_demos), embedder)


def other_occurrences(text: str, marked: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Every other whole-word occurrence of what the annotator marked, in any letter case, with the
    label they gave it: where it overlaps nothing marked or already proposed (the longer marked
    mention is looked for first, so "New York" wins over "York")."""
    taken = [(s, e) for s, e, _ in marked]
    out = []
    for start, end, label in sorted(marked, key=lambda m: m[0] - m[1]):
        mention = text[start:end].strip()
        if not mention:
            continue
        for s, e in occurrences(mention, text, ignore_case=True):
            if all(e <= a or s >= b for a, b in taken):
                taken.append((s, e))
                out.append((s, e, label))
    return sorted(out)


def propose_occurrences(engine, control: SpanControl, prompt: SpanPrompt, text: str,
                        marked: Sequence[tuple[int, int, str]], embedder=None) -> list[Span]:
    """The annotator's marked spans carried to their other occurrences (`other_occurrences`), each
    scored by P(the annotator's label | that occurrence's text) as a mention is typed when
    predicted: by the typing step, re-typed by the prompt's typing head if it has one (which
    needs `embedder`)."""
    proposals = other_occurrences(text, marked)
    if not proposals:
        return []
    words = type_words(engine, control)
    prefix = render_prefix(control, prompt, words)
    shown = fit_shown(engine, control, prefix, "", clean_text(text), words.types_line)
    mentions = list(dict.fromkeys(clean_text(text[s:e]) for s, e, _ in proposals))
    typed = type_mentions(engine, control, prefix, shown, mentions, words)
    rows = dict(zip(mentions, _retyped(prompt, typed, mentions, shown, embedder)))
    out = []
    for start, end, label in proposals:
        row = rows[clean_text(text[start:end])]
        out.append(Span(start, end, text[start:end], label, prompt.calibrated(float(row[control.labels.index(label)])),
                        tuple(float(p) for p in row)))
    return out


def span_region(control: SpanControl, span: Span) -> dict:
    """A span as Label Studio stores a `<Labels>` region, with its score and label distribution."""
    names = control.labels + (NONE,)
    return {
        "from_name": control.name,
        "to_name": control.to_name,
        "type": "labels",
        "value": {"start": span.start, "end": span.end, "text": span.text, "labels": [span.label]},
        "score": round(span.score, 6),
        "probabilities": {name: round(p, 6) for name, p in zip(names, span.probabilities)},
    }
