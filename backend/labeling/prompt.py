"""PromptVersion → the three pieces the engine scores: a shared prefix, one item per task, and branches.

The prefix (instructions + demonstrations) is identical for every task of a request, so the engine
evaluates it once and keeps it in its KV cache; only the item and the label tokens cost per task.

A single-choice control has two renderings. The plain one scores each label's own tokens after
"Label:". The coded one (`codes=True`) lists the labels as "A) ...", "B) ..." and scores the code
tokens " A", " B" after "Answer:": it is for engines that see only one next-token distribution
(a remote OpenAI-compatible server), where a multi-token label, or two labels starting with the
same token, cannot be told apart by their first token.

An interactive request adds evidence (`PromptVersion.evidence`): what the annotator already chose
for the task's other controls, one line each after the task text ("Annotated sentiment:
negative"). Content-free calibration sees the same lines with a content-free value, so it removes
what the lines' presence does to the answer but keeps what their values say.

Demonstrations come two ways. Fixed demos (`PromptVersion.demos`) are part of the shared prefix.
Nearest demos (`PromptVersion.nearest` > 0) are picked per task from `PromptVersion.pool` by
embedding similarity; they are rendered at the head of the item (`task_demos`), after the shared
instructions, so the instructions stay in the KV cache and only the task's own demos cost per task.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from ..engines.base import Branch
from ..errors import LabelConfigError
from .label_config import ChoiceControl
from .reasoning import REASONING_CUE, REASONING_HINT, Reasoning

CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
CONTENT_FREE_EVIDENCE = "N/A"  # an evidence line's value in content-free calibration
YES, NO = " Yes", " No"
CODES = tuple(string.ascii_uppercase)  # " A" ... " Z" are single tokens in common tokenizers
DEMO_MAX_CHARS = 400  # a demonstration is an example, not a document: it must leave room for the task


@dataclass(frozen=True)
class Demo:
    text: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class PromptVersion:
    """What a model version changes in the prompt; `instructions=None` means the built-in default.

    `nearest` > 0 shows each task the `nearest` demos of `pool` most similar to its text;
    `reasoning` has the model write a rationale before the label set is scored (reasoning.py).
    `evidence` ((topic, shown labels) per control the annotator answered) is set per request,
    never stored with a version."""

    name: str = "v0"
    instructions: str | None = None
    demos: tuple[Demo, ...] = ()
    pool: tuple[Demo, ...] = ()
    nearest: int = 0
    reasoning: Reasoning | None = None
    evidence: tuple[tuple[str, str], ...] = ()

    @property
    def shared(self) -> "PromptVersion":
        """The part every task shares (what content-free calibration can see): of a nearest-demo
        prompt without its per-task demos, of evidence its lines with content-free values."""
        shared = replace(self, pool=(), nearest=0) if self.nearest else self
        if self.evidence:
            shared = replace(shared, evidence=tuple((topic, CONTENT_FREE_EVIDENCE) for topic, _ in self.evidence))
        return shared

    @property
    def without_evidence(self) -> "PromptVersion":
        return replace(self, evidence=()) if self.evidence else self

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "instructions": self.instructions,
            "demos": [_demo_dict(d) for d in self.demos],
        }
        if self.nearest:
            out.update(nearest=self.nearest, pool=[_demo_dict(d) for d in self.pool])
        if self.reasoning:
            out["reasoning"] = self.reasoning.to_dict()
        return out


def _demo_dict(demo: Demo) -> dict:
    return {"text": demo.text, "labels": list(demo.labels)}


def clip_demo(text: str) -> str:
    """A demonstration's text, cleaned and cut to DEMO_MAX_CHARS."""
    return clean_text(text)[:DEMO_MAX_CHARS]


# Control names that say what a control is, not what it is about: "Annotated label: positive"
# tells the model nothing of the text's topic, and on the embedded model it moved the other
# control's answer the wrong way (docs/benchmarks.md, interactive /predict latency).
GENERIC_TOPICS = frozenset({"label", "labels", "choice", "choices", "class", "category", "tag", "tags", "answer"})


def evidence_of(controls: Sequence[ChoiceControl], chosen: Mapping[str, Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """`PromptVersion.evidence` from the labels an annotator chose per control (config order;
    labels the control does not have are dropped): each control's topic and its labels as its
    own prompt shows them. A control whose name is generic (GENERIC_TOPICS) gives no line."""
    out = []
    for control in controls:
        labels = [label for label in chosen.get(control.name, ()) if label in control.labels]
        if labels and _topic(control).lower() not in GENERIC_TOPICS:
            words = shown_labels(control.labels)
            out.append((_topic(control), ", ".join(dict.fromkeys(words[label] for label in labels))))
    return tuple(out)


def evidence_lines(evidence: tuple[tuple[str, str], ...]) -> str:
    """The evidence as the item shows it after the text. "Annotated" keeps a control named like a
    cue of the prompt ("label") from reading as the answer line."""
    return "".join(f"\n{clean_text(f'Annotated {topic}: {value}')}" for topic, value in evidence)


@dataclass(frozen=True)
class RenderedPrompt:
    prefix: str
    item_head: str = "Text: "
    item_tail: str = ""
    branches: tuple[Branch, ...] = field(default_factory=tuple)
    reasoning: Reasoning | None = None  # the labels are scored after a rationale the model writes
    # lines after the text (interactive); left out of repr so that the logit cache's keys (a repr)
    # of prompts without evidence stay what they were; the service never caches one with evidence
    evidence: str = field(default="", repr=False)

    def item(self, text: str) -> str:
        return f"{self.item_head}{text}{self.evidence}{self.item_tail}"

    def rationale_item(self, text: str) -> str:
        """What the model continues to write its rationale: the item up to the reasoning cue."""
        return f"{self.item_head}{text}{self.evidence}{REASONING_CUE}"

    def with_rationale(self, rationale: str) -> "RenderedPrompt":
        """The prompt whose item carries this rationale before the label line."""
        return replace(self, item_tail=f"{REASONING_CUE} {rationale}{self.item_tail}")


def _topic(control: ChoiceControl) -> str:
    return control.name.replace("_", " ").replace("-", " ").strip() or "label"


_SNAKE_CASE = re.compile(r"[^\W_]+(?:_+[^\W_]+)+")
# CamelCase: a word boundary inside (aB, 3B, or an acronym before a word: URLShortener), but not
# a brand's lone lowercase letter (iPhone, eBay)
_CAMEL_CASE = re.compile(r"(?![a-z][A-Z])[A-Za-z0-9]*(?:[a-z0-9][A-Z]|[A-Z][A-Z][a-z])[A-Za-z0-9]*")
_CAPITALISED = re.compile(r"[A-Z][a-z0-9]+")
_CAMEL_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")


def _as_words(label: str) -> str:
    if _SNAKE_CASE.fullmatch(label):
        return " ".join(filter(None, label.split("_")))
    if _CAMEL_CASE.fullmatch(label):  # AddToPlaylist → add to playlist; an acronym stays: GetURL → get URL
        return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in _CAMEL_WORD.findall(label))
    return label


def shown_labels(labels: Sequence[str]) -> dict[str, str]:
    """How the prompt writes each label: a snake_case or CamelCase name in words
    (`accept_reservations` → `accept reservations`, `AddToPlaylist` → `add to playlist`), which is
    how the model has read such things, and fewer tokens to score (clinc150's intents); beside
    CamelCase names a capitalised single word is lower-cased too (`Weather` → `weather`). Labels
    are shown as they are if that would make two of them read alike."""
    shown = {label: _as_words(label) for label in labels}
    if any(_CAMEL_CASE.fullmatch(label) for label in labels):  # PlayMusic, Weather → play music, weather
        shown = {label: word.lower() if _CAPITALISED.fullmatch(word) else word for label, word in shown.items()}
    return shown if len(set(shown.values())) == len(shown) else {label: label for label in labels}


def default_instructions(control: ChoiceControl) -> str:
    options = ", ".join(shown_labels(control.labels).values())
    if control.kind == "rating":
        return (f"Rate the {_topic(control)} of each text from 1 to {len(control.labels)}. "
                f"Answer with exactly one of: {options}.")
    if control.multiple:
        return (
            f"Decide which {_topic(control)} labels apply to each text. "
            f"Possible labels: {options}."
        )
    return f"Classify the {_topic(control)} of each text. Answer with exactly one of: {options}."


def annotator_instructions(control: ChoiceControl, typed: str) -> str:
    """An annotator's typed instruction as a prompt's instructions: their words, then the labels
    the answer is scored over (an instruction rarely lists them, and the model reads them there)."""
    options = ", ".join(shown_labels(control.labels).values())
    tail = f"Possible labels: {options}." if control.multiple else f"Answer with exactly one of: {options}."
    return f"{clean_text(typed)} {tail}"


# Characters that render as nothing, with which a text can hide a cue word from a reader or a filter.
# ZWJ and ZWNJ join emoji and shape words in Persian or Indic scripts, so they are only dropped
# beside ASCII letters or a colon, where they join nothing.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200e\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0]")
_JOINER_BY_LATIN = re.compile("(?<=[A-Za-z:])[\u200c\u200d]+|[\u200c\u200d]+(?=[A-Za-z:])")
# ASCII colon and the characters that look like it (fullwidth, ratio, modifier letters, small forms)
_COLONS = ":\uff1a\u2236\ua789\u02d0\u02f8\ufe55\ufe13\ufe30\u0589\u05c3\u0703\u0704\u1361\u16ec\u1804\u205a\u2e2c"
# The prompt's own field names, written with a colon or a look-alike and any spacing
_CUE = re.compile(rf"\b(text|labels?|answer|reasoning|options)\s*[{_COLONS}]\s*", re.IGNORECASE)


def clean_text(text: str) -> str:
    """The task text as the prompt shows it. Whitespace is collapsed so a text cannot fake the
    prompt's 'Text:'/'Label:' line structure. A cue in disguise (a field name written with a
    look-alike colon or with invisible characters inside) is written as the plain cue: it then
    steers the model no more than a plain one, and a filter or a reader sees what it is. Removing
    the cue altogether was measured and steered as much (docs/benchmarks.md, "Prompt injection")."""
    text = _JOINER_BY_LATIN.sub("", _INVISIBLE.sub("", str(text)))
    return _CUE.sub(lambda m: f"{m.group(1)}: ", " ".join(text.split())).strip()


def render(control: ChoiceControl, version: PromptVersion, *, codes: bool = False,
           task_demos: tuple[Demo, ...] = ()) -> RenderedPrompt:
    """`task_demos` (this task's nearest demos) go at the head of the item, after the shared prefix."""
    rendered = _render(control, version, codes, task_demos)
    if version.evidence:
        rendered = replace(rendered, evidence=evidence_lines(version.evidence))
    return replace(rendered, reasoning=version.reasoning) if version.reasoning else rendered


def _hinted(instructions: str, version: PromptVersion) -> str:
    """Instructions that ask for the rationale when the version reasons first."""
    return f"{instructions} {REASONING_HINT}" if version.reasoning else instructions


def _render(control: ChoiceControl, version: PromptVersion, codes: bool, task_demos: tuple[Demo, ...]) -> RenderedPrompt:
    if codes and not control.multiple:
        return render_coded(control, version, task_demos)
    instructions = _hinted(version.instructions or default_instructions(control), version)
    words = shown_labels(control.labels)
    if control.multiple:
        def shown(demos):
            return "".join(f"Text: {clean_text(d.text)}\nLabels: {', '.join(words.get(x, x) for x in d.labels) or 'none'}\n\n"
                           for d in demos)

        branches = tuple(
            Branch(suffix=f'Does the label "{words[label]}" apply to this text? Answer:', continuations=(YES, NO))
            for label in control.labels
        )
        return RenderedPrompt(prefix=f"{instructions}\n\n{shown(version.demos)}",
                              item_head=f"{shown(task_demos)}Text: ", item_tail="\n", branches=branches)

    def shown(demos):
        return "".join(f"Text: {clean_text(d.text)}\nLabel: {words.get(d.labels[0], d.labels[0])}\n\n"
                       for d in demos if d.labels)

    # A taxonomy path is a prefix of its children's ("Europe" of "Europe / France"): each is scored
    # with the line's end after it, or a node would always outscore its own descendants
    end = "\n" if control.kind == "taxonomy" else ""
    branch = Branch(suffix="", continuations=tuple(f" {words[label]}{end}" for label in control.labels))
    return RenderedPrompt(prefix=f"{instructions}\n\n{shown(version.demos)}", item_head=f"{shown(task_demos)}Text: ",
                          item_tail="\nLabel:", branches=(branch,))


def render_coded(control: ChoiceControl, version: PromptVersion, task_demos: tuple[Demo, ...] = ()) -> RenderedPrompt:
    """Single choice with one-letter codes: the answer is one token whatever the labels are."""
    if len(control.labels) > len(CODES):
        raise LabelConfigError(
            f"control {control.name!r} has {len(control.labels)} labels; with LLM_BACKEND=openai a control "
            f"can have at most {len(CODES)} (one letter code each)", field="label_config")
    code_of = dict(zip(control.labels, CODES))
    words = shown_labels(control.labels)
    options = "\n".join(f"{code}) {clean_text(words[label])}" for label, code in code_of.items())
    head = version.instructions or f"Classify the {_topic(control)} of each text."
    instructions = _hinted(f"{head}\nOptions:\n{options}\nAnswer with the letter of one option.", version)

    def shown(demos):
        return "".join(f"Text: {clean_text(d.text)}\nAnswer: {code_of[d.labels[0]]}\n\n"
                       for d in demos if d.labels and d.labels[0] in code_of)

    branch = Branch(suffix="", continuations=tuple(f" {code_of[label]}" for label in control.labels))
    return RenderedPrompt(prefix=f"{instructions}\n\n{shown(version.demos)}", item_head=f"{shown(task_demos)}Text: ",
                          item_tail="\nAnswer:", branches=(branch,))
