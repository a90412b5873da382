"""A model version in plain words, and what changed from another (`versions show` / `diff`).

A version's JSON holds what serving needs (bias vectors, head coefficients, demonstration pools);
a user deciding whether to trust what it learnt needs the facts behind them: the instructions it
writes, the demonstrations it shows, how its scores are calibrated, whether a head answers and
how much the LLM still counts, and what that was measured to do.
"""
from __future__ import annotations

import time

from .model_version import ModelVersion
from .recipe import ControlRecipe
from .spans import SpanPrompt

DEMO_CHARS = 80  # of each demonstration's text


def _numbers(values) -> str:
    values = values if isinstance(values, (tuple, list)) else (values,)
    return ", ".join(f"{v:+.2f}" if i < 8 else "…" for i, v in enumerate(values) if i <= 8)


def _demo(text: str, labels) -> str:
    short = text if len(text) <= DEMO_CHARS else text[:DEMO_CHARS - 1] + "…"
    return f"{short!r} → {', '.join(labels) or '(no label)'}"


def recipe_facts(recipe: ControlRecipe) -> dict:
    p, cal, head = recipe.prompt, recipe.calibrator, recipe.head
    facts = {
        "prompt": p.name,
        "instructions": p.instructions or "(the built-in default)",
        "demonstrations": [_demo(d.text, d.labels) for d in p.demos],
        "nearest demonstrations": f"the {p.nearest} most similar of {len(p.pool)} labelled texts" if p.nearest else "none",
        "reasoning": (f"{p.reasoning.samples} rationale(s) of at most {p.reasoning.max_tokens} tokens before the labels"
                      if p.reasoning else "none"),
        "calibration": ("content-free, fitted at serving time" if cal is None else
                        f"{cal.method}: bias per label {_numbers(cal.bias)}; temperature {_numbers(cal.temperature)}"),
    }
    if head is None:
        facts["head"] = "none"
    else:
        kind = ("one-vs-rest " if head.one_vs_rest else "") + ("balanced " if head.balanced else "")
        kind += "logistic head" + (f" (L2 C = {head.c:g})" if head.c is not None else "")
        reads = f"{head.embedder} embeddings" + (f" and the LLM's state at the answer (weight {head.state_weight:g})"
                                                 if head.reads_state else "")
        if head.llm_scale:
            facts["head"] = (f"{kind} on {reads} and the LLM's log-probabilities "
                             f"(stacked, scale {head.llm_scale:g}), temperature {head.temperature:.2f}")
        else:
            facts["head"] = (f"{kind} on {reads}, {head.pooling} pooling, LLM weight "
                             f"{head.weight_llm:.2f}{' (no LLM pass at serving)' if not head.reads_llm else ''}, "
                             f"temperature {head.temperature:.2f}")
    if recipe.threshold is not None:
        facts["decision threshold"] = f"{recipe.threshold:.2f}"
    return facts


def span_facts(prompt: SpanPrompt) -> dict:
    return {
        "prompt": prompt.name,
        "instructions": prompt.instructions or "(the built-in default)",
        "demonstrations": [_demo(d.text, [f"{label}: {mention!r}" for mention, label in d.entities]) for d in prompt.demos],
        "nearest demonstrations": (f"the {prompt.nearest} most similar of {len(prompt.pool)} annotated texts"
                                   if prompt.nearest else "none"),
        "score calibration": "none" if prompt.calibration is None else "a·logit(score) + b = " + _numbers(prompt.calibration),
        "typing head": "none (the LLM's types)" if prompt.typing is None else _typing(prompt.typing),
    }


def _typing(head) -> str:
    embedded = {"mention": "the mention", "context": "the mention in its text", "both": "the mention, alone and in its text"}
    pooled = "alone" if head.weight_llm == 0 else f"{head.pooling} pooling with the LLM's types, LLM weight {head.weight_llm:.2f}"
    return (f"logistic head on {head.embedder} embeddings of {embedded.get(head.inputs, head.inputs)}, {pooled}"
            + (", drops mentions it types as none" if head.has_none else ""))


def summary(version: ModelVersion) -> dict:
    return {
        "model_version": version.label,
        "kind": version.kind,
        "parent": version.parent,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(version.created_at)) if version.created_at else None,
        "ground truth": f"{version.gt_count} labelled tasks ({len(version.trained_on)} used to build it)",
        "controls": {name: recipe_facts(r) for name, r in version.controls.items()},
        "spans": {name: span_facts(p) for name, p in version.spans.items()},
        "metrics": version.metrics,
    }


def difference(old: ModelVersion, new: ModelVersion) -> dict:
    """Per control, each fact that differs as [old, new] (demonstrations as added / removed), and
    the metrics each version was published with."""
    a, b = summary(old), summary(new)
    changed: dict = {}
    for section in ("controls", "spans"):
        for name in sorted(set(a[section]) | set(b[section])):
            before, after = a[section].get(name, {}), b[section].get(name, {})
            facts = {}
            for fact in dict.fromkeys([*before, *after]):
                x, y = before.get(fact), after.get(fact)
                if x == y:
                    continue
                if isinstance(x, list) or isinstance(y, list):
                    facts[fact] = {"added": [d for d in y or [] if d not in (x or [])],
                                   "removed": [d for d in x or [] if d not in (y or [])]}
                else:
                    facts[fact] = [x, y]
            if facts:
                changed[name] = facts
    return {"from": old.label, "to": new.label, "changed": changed,
            "metrics": {old.label: old.metrics, new.label: new.metrics}}
