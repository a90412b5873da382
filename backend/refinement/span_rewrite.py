"""The instruction rewrite for a `<Labels>` control: a teacher reads the span prompt's mistakes
and proposes what each type means.

The teacher (refinement/candidates/teacher.py, the one the choices' rewrite uses) reads mentions
the current prompt typed wrongly, missed or marked though annotators did not, on a minibatch of
annotated texts. Each proposal is appended to the default instruction (whose first sentence is
what makes a base model write the list at all) and scored by exact span micro-F1 on the
minibatch; each round rewrites the best so far. The best proposal that beats the current prompt
on the minibatch becomes a candidate; the minibatch helped choose it, so the job judges every
candidate without those texts (span_learning.refine_spans). Calls and time are budgeted like the
choices' rewrite: the search stops while its winner can still be run on the other texts in time.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..errors import BackendError
from ..labeling.label_config import SpanControl
from ..labeling.spans import SpanPrompt, default_span_instructions, extract_spans
from ..metrics.spans import SpanKey, exact_f1
from .candidates.instruction_rewrite import Rewrite
from .candidates.teacher import Mistake, TeacherBrief

log = logging.getLogger(__name__)

MINIBATCH = 12  # texts each proposal is scored on: a text costs a constrained list and its typing
SHOWN_MISTAKES = 4  # as the choices' rewrite: what a 270M teacher's context and attention hold
# A minibatch and enough texts left to judge: a paired bootstrap on fewer confirms only huge gains.
MIN_REWRITE_TEXTS = 40
NOT_A_NAME = "not a name"


def span_mistakes(texts: Sequence[str], preds: Sequence[Sequence[SpanKey]], golds: Sequence[Sequence[SpanKey]],
                  limit: int, seed: int = 0) -> tuple[Mistake, ...]:
    """Up to `limit` mention-level mistakes, the three kinds in turn (typed wrongly, missed,
    marked though not annotated), each kind's order shuffled by `seed`: a mention, what it was
    marked and what it is (NOT_A_NAME for no span)."""
    kinds: list[list[Mistake]] = [[], [], []]
    for text, pred, gold in zip(texts, preds, golds):
        pred_at = {(s, e): label for s, e, label in pred}
        gold_at = {(s, e): label for s, e, label in gold}
        for (s, e), label in gold_at.items():
            if (s, e) not in pred_at:
                kinds[1].append(Mistake(text[s:e], label, NOT_A_NAME))
            elif pred_at[(s, e)] != label:
                kinds[0].append(Mistake(text[s:e], label, pred_at[(s, e)]))
        kinds[2] += [Mistake(text[s:e], NOT_A_NAME, label) for (s, e), label in pred_at.items() if (s, e) not in gold_at]
    rng = np.random.default_rng(seed)
    queues = [list(dict.fromkeys(kind[i] for i in rng.permutation(len(kind)))) for kind in kinds]
    out: list[Mistake] = []
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return tuple(out)


@dataclass
class SpanRewriteLog:
    rounds: int = 0
    proposals: int = 0
    teacher_calls: int = 0
    llm_calls: int = 0  # teacher generations and texts run
    start_f1: float = 0.0
    best_f1: float | None = None
    best_instructions: str | None = None  # the best proposal's, better than the current on the minibatch or not
    history: list[dict] = field(default_factory=list)
    stopped: str = ""

    def summary(self) -> dict:
        return {"rounds": self.rounds, "proposals": self.proposals, "teacher_calls": self.teacher_calls,
                "llm_calls": self.llm_calls, "minibatch_f1_current": round(self.start_f1, 4),
                "minibatch_f1_best": None if self.best_f1 is None else round(self.best_f1, 4),
                "best_instructions": self.best_instructions,
                "history": self.history, **({"stopped": self.stopped} if self.stopped else {})}


@dataclass
class SpanInstructionSearch:
    """Rounds of propose → run on the minibatch → keep the best, within the rewrite's budget."""

    rewrite: Rewrite
    service: object  # labeling.service.LabelingService: the engine and the embedder
    control: SpanControl
    prompt: SpanPrompt  # the current prompt, raw (no calibration): proposals replace its instructions
    texts: Sequence[str]  # the minibatch
    golds: Sequence[Sequence[SpanKey]]
    current: Sequence[Sequence[SpanKey]]  # the current prompt's spans of the minibatch
    task_demos: Sequence[tuple]  # each minibatch text's nearest annotated texts, if the prompt shows them
    seconds_per_text: float
    rest: int  # texts the winner must still be run on after the search
    deadline: float
    log: SpanRewriteLog = field(default_factory=SpanRewriteLog)

    def run(self) -> tuple[SpanPrompt, list[list]] | None:
        """The best new prompt and its spans of each minibatch text, if it beats the current there."""
        self.log.start_f1 = exact_f1(self.current, self.golds)
        # (minibatch F1, what the teacher reads as the old instruction, spans): the current prompt's
        # whole instruction, or a proposal alone (the default instruction it is appended to is the same)
        start = (self.log.start_f1, self.prompt.instructions or default_span_instructions(self.control),
                 list(self.current))
        found: tuple[float, str, list] | None = None  # the best proposal so far
        tried: dict[str, float] = {}  # proposal → minibatch F1
        budget = self.rewrite.budget
        for r in range(1, budget.rounds + 1):
            parent = found if found and found[0] > start[0] else start
            brief = TeacherBrief(self.control.name, tuple(self.control.labels), parent[1],
                                 span_mistakes(self.texts, parent[2], self.golds, SHOWN_MISTAKES, seed=r),
                                 tried=tuple(sorted(((t, f) for t, f in tried.items() if t != parent[1]),
                                              key=lambda t: -t[1])[:2]), spans=True)
            if not self._affordable(0, budget.proposals):
                break
            proposals = self._ask(brief, seed=r)
            if proposals is None:
                break
            scored = []
            for proposal in proposals:
                if proposal in tried:
                    continue
                if not self._affordable(len(self.texts), 0):
                    break
                preds = self._run(self.instructions(proposal))
                tried[proposal] = exact_f1(preds, self.golds)
                scored.append(round(tried[proposal], 4))
                if found is None or tried[proposal] > found[0]:
                    found = (tried[proposal], proposal, preds)
            self.log.rounds = r
            self.log.history.append({"round": r, "proposals": len(proposals), "scored": scored})
            if self.log.stopped:
                break
        if found:
            self.log.best_f1, self.log.best_instructions = found[0], self.instructions(found[1])
        if found is None or found[0] <= start[0]:
            return None
        return self.candidate(self.instructions(found[1])), found[2]

    def instructions(self, proposal: str) -> str:
        """A proposal as the prompt's instructions: after the default one, whose first sentence is
        what makes a base model write the list at all."""
        return f"{default_span_instructions(self.control)} {proposal}"

    def candidate(self, instructions: str) -> SpanPrompt:
        return replace(self.prompt, name="rewrite", instructions=instructions)

    def _run(self, instructions: str) -> list[list]:
        t0 = time.monotonic()
        prompt = self.candidate(instructions)
        preds = [[(s.start, s.end, s.label) for s in extract_spans(self.service.engine, self.control, prompt, text,
                                                                   demos, self.service.embedder)]
                 for text, demos in zip(self.texts, self.task_demos)]
        self.log.llm_calls += len(self.texts)
        self.seconds_per_text = (time.monotonic() - t0) / max(len(self.texts), 1)
        return preds

    def _ask(self, brief: TeacherBrief, seed: int) -> list[str] | None:
        teacher, before = self.rewrite.teacher, self.rewrite.teacher.calls
        try:
            proposals = teacher.propose(brief, self.rewrite.budget.proposals, seed=seed)
        except BackendError as exc:  # an unreachable or failing teacher ends the search, not the job
            log.warning("span rewrite teacher failed: %s", exc)
            self.log.stopped = f"teacher failed: {exc.message}"
            return None
        finally:
            made = teacher.calls - before
            self.log.teacher_calls += made
            self.log.llm_calls += made
        self.log.proposals += len(proposals)
        return proposals

    def _affordable(self, texts: int, teacher_calls: int) -> bool:
        """Can `texts` more be run (and `teacher_calls` made) and the winner still run on the rest in time?"""
        if self.log.llm_calls + texts + teacher_calls + self.rest > self.rewrite.budget.max_calls:
            self.log.stopped = f"REFINE_REWRITE_MAX_CALLS={self.rewrite.budget.max_calls} reached"
            return False
        # a teacher generation costs about what a text's list does (both generate ~100 tokens)
        need = self.seconds_per_text * (texts + teacher_calls + self.rest)
        if time.monotonic() + need > self.deadline:
            self.log.stopped = "time budget spent"
            return False
        return True


def minibatch_mask(n: int) -> np.ndarray:
    """Which of n texts the search runs on: MINIBATCH of them, drawn with a fixed seed."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(0).permutation(n)[:MINIBATCH]] = True
    return mask


def rewrite_candidate(rewrite: Rewrite | None, service, control: SpanControl, prompt: SpanPrompt, texts: Sequence[str],
                      golds: Sequence[Sequence[SpanKey]], current: Sequence[Sequence[SpanKey]],
                      task_demos: Sequence[tuple], *, seconds_per_text: float,
                      deadline: float) -> tuple[tuple[SpanPrompt, list[list], np.ndarray] | None, dict]:
    """The rewrite's candidate, its spans of each text outside the minibatch (none for the
    minibatch's), and the minibatch as a mask over `texts`; None when there is no teacher, too
    few texts, no proposal better than `prompt` on the minibatch, or no time to run it. And the
    search's record for the report. `task_demos`: each text's nearest annotated texts as
    `prompt` shows them (the candidate keeps its pool), which the current prompt was judged with."""
    if rewrite is None:
        return None, {}
    if len(texts) < MIN_REWRITE_TEXTS:
        return None, {"skipped": f"{len(texts)} judged texts, fewer than {MIN_REWRITE_TEXTS}"}
    in_batch = minibatch_mask(len(texts))
    batch, rest = np.flatnonzero(in_batch), np.flatnonzero(~in_batch)
    search = SpanInstructionSearch(rewrite, service, control, prompt, [texts[i] for i in batch],
                                   [golds[i] for i in batch], [current[i] for i in batch],
                                   [task_demos[i] for i in batch], seconds_per_text, len(rest), deadline)
    found = search.run()
    info = search.log.summary()
    if found is None:
        return None, info
    candidate = found[0]
    spans: list[list] = [[] for _ in texts]
    for i in rest:
        if time.monotonic() > deadline:
            info["stopped"] = "the deadline came before the winner had run on every text"
            return None, info
        spans[i] = extract_spans(service.engine, control, candidate, texts[i], task_demos[i], service.embedder)
    info["llm_calls"] += len(rest)
    log.info("span control %r rewrite: minibatch exact F1 %.3f vs %.3f; %r", control.name, search.log.best_f1,
             search.log.start_f1, candidate.instructions)
    return (candidate, spans, in_batch), info
