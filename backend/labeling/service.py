"""The request path composed: tasks → texts → prompt → scoring → calibration → LS predictions.

The local engine scores texts one after another (its KV cache keeps the shared prefix). An engine
that is a remote server (`capabilities.parallel_requests > 1`) gets the texts of one call
concurrently on a thread pool; the first failure cancels what has not started, so a broken server
sees one failing request per worker, not one per task.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np

from ..engines.base import LabelEngine
from ..errors import BadRequest, TunedBodyMissing
from .calibration import Calibrator, raw_probabilities
from .demos import NearestDemos, nearest_indices
from .head import Embedder, HeadWeights
from .label_config import ChoiceControl, LabelTask, valid_unicode
from .model_version import ModelVersion
from .prediction import ControlPrediction, decide, to_ls_prediction
from .prompt import CONTENT_FREE_TEXTS, Demo, PromptVersion, RenderedPrompt, clean_text, evidence_of, render
from .reasoning import clean_rationale, pool_samples
from .recipe import ControlRecipe
from .scoring import fit_text, label_logits, label_logits_with_state, uses_codes
from .spans import SpanPrompt, extract_spans, propose_occurrences, span_region, span_support
from .tuned_body import TunedBody, is_tuned, tuned_embedder

log = logging.getLogger(__name__)
TUNED_LOADED = 4  # fine-tuned bodies kept loaded (a version and the ones before it, while jobs compare them)
T = TypeVar("T")
R = TypeVar("R")


class LogitSink(Protocol):
    """Where `/predict` keeps a version's label logits for the next job (store/predicted_logits.py)."""

    def field(self, multiple: bool, rendered: object, text: str, max_context: int) -> bytes: ...

    def put_many(self, entries: dict[bytes, tuple[np.ndarray, bool]]) -> None: ...


class LogitStore(LogitSink, Protocol):
    """Label logits kept between refinement jobs (store/logit_cache.py), keyed by what decides them."""

    def get_many(self, fields: list[bytes]) -> list[tuple[np.ndarray, bool] | None]: ...

    def holds(self, fields: list[bytes]) -> list[bool]: ...

    def put_many(self, entries: dict[bytes, tuple[np.ndarray, bool]]) -> None: ...


def map_tasks(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`[fn(x) for x in items]`, on `workers` threads when > 1; fail fast on the first error."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="score") as pool:
        futures = [pool.submit(fn, x) for x in items]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    for future in futures:  # the first failure in task order, once the started ones have ended
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


@dataclass(frozen=True)
class Scored:
    """One text scored: uncalibrated label logits, whether the text was cut, tokens it cost, the
    rationales written first (a reasoning prompt; none when the logit cache had the text), and
    the LLM's state at the answer when it was asked for (`score_texts`' `states`)."""

    logits: np.ndarray
    truncated: bool
    usage: dict | None = None
    rationales: tuple[str, ...] = ()
    state: np.ndarray | None = None


@dataclass
class TaskTexts:
    """The cleaned text of each field one task needs, plus warnings to return with its prediction."""

    texts: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)  # as the task holds it: span offsets point here


def extract_texts(tasks: object, label_task: LabelTask, max_chars: int) -> list[TaskTexts]:
    """Validate the `tasks` of a /predict body; every error names the offending field."""
    if not isinstance(tasks, list):
        raise BadRequest("`tasks` must be a list of task objects", field="tasks")
    if not tasks:
        raise BadRequest("`tasks` is empty", field="tasks")
    out = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BadRequest(f"tasks[{i}] must be an object with a `data` object", field=f"tasks[{i}].data")
        item = TaskTexts(texts={})
        for name in label_task.fields:
            where = f"tasks[{i}].data.{name}"
            value = task["data"].get(name)
            if value is None:
                raise BadRequest(f"{where} is missing (the label config reads ${name})", field=where)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise BadRequest(f"{where} must be a string", field=where)
            if isinstance(value, str):  # no UTF-8 for a lone surrogate: the tokenizer and hashing would fail
                valid_unicode(value, where)
            text = clean_text(value)
            if not text:
                raise BadRequest(f"{where} is empty", field=where)
            if len(text) > max_chars:
                item.warnings.append(f"{where} truncated from {len(text)} to {max_chars} characters")
                text = text[:max_chars]
            item.texts[name] = text
            item.raw[name] = str(value)[:max_chars]
        out.append(item)
    return out


class EditorContext(Protocol):
    """What the annotator has set in the editor (labelstudio/payloads.py reads it from a request)."""

    answered: frozenset[str]  # controls with a region of the annotator's
    marked: dict  # <Labels> control name → [(start, end, label)] the annotator marked
    choices: dict  # choice control name → (labels the annotator chose,)
    instruction: str  # what the annotator typed in the config's instruction <TextArea>


class LabelingService:
    """Holds the engine and the content-free calibrators (computed once per prompt and label set)."""

    def __init__(self, engine: LabelEngine, *, calibration: str = "contextual", embedder: Embedder | None = None,
                 logit_cache: LogitStore | None = None, bodies: Callable[[str], TunedBody | None] | None = None):
        self.engine = engine
        self.bodies = bodies  # a fine-tuned head's body by name (store.tuned_bodies), if any version has one
        self._tuned: OrderedDict[str, Embedder] = OrderedDict()
        self._tuned_lock = threading.Lock()
        self.logit_cache = logit_cache  # refinement jobs only: a text scored by the last job is not scored again
        self.calibration = calibration
        self.embedder = embedder or Embedder()
        self.demos = NearestDemos(self.embedder)
        self._calibrators: dict[tuple, Calibrator] = {}
        self._codes: dict[ChoiceControl, bool] = {}
        self._lock = threading.Lock()

    def calibrator(self, control: ChoiceControl, prompt: PromptVersion) -> Calibrator:
        """Contextual (content-free) calibration of `prompt` for `control`, or identity if disabled.

        A nearest-demo prompt is calibrated on its shared part (instructions and fixed demos): its
        per-task demos depend on the text, which a content-free input does not have."""
        if self.calibration == "none":
            return Calibrator.identity(len(control.labels))
        prompt = prompt.shared
        key = (control, prompt)
        with self._lock:
            cached = self._calibrators.get(key)
        if cached is None:
            cf = np.stack([s.logits for s in self.score_texts(control, prompt, list(CONTENT_FREE_TEXTS))])
            cached = Calibrator.contextual(cf, control.multiple)
            with self._lock:
                self._calibrators[key] = cached
        return cached

    def calibrated(self, control: ChoiceControl, recipe: ControlRecipe) -> Calibrator:
        """The calibrator a recipe is served with: its own (fitted on ground truth), else the
        content-free one of its prompt.

        A fitted calibrator was fitted on answers to the prompt without evidence lines; with
        them it is applied to logits moved by what the lines do to content-free inputs (the
        difference of the two content-free biases), so the lines' presence shifts nothing and
        their values still count."""
        if recipe.calibrator is None:
            return self.calibrator(control, recipe.prompt)
        if not recipe.prompt.evidence or self.calibration == "none":
            return recipe.calibrator
        with_lines = np.asarray(self.calibrator(control, recipe.prompt).bias)
        plain = np.asarray(self.calibrator(control, recipe.prompt.without_evidence).bias)
        return recipe.calibrator.shifted(with_lines - plain)

    def uses_codes(self, control: ChoiceControl) -> bool:
        """Whether the engine needs letter codes for this control (decided once per control)."""
        if control not in self._codes:
            self._codes[control] = uses_codes(self.engine, control)
        return self._codes[control]

    def logits(self, control: ChoiceControl, prompt: PromptVersion, text: str,
               task_demos: tuple[Demo, ...] = ()) -> tuple[np.ndarray, bool]:
        """Uncalibrated label logits of one text, and whether the text had to be cut to fit."""
        logits, truncated, _, _ = self._score_one(control, prompt, text, task_demos)
        return logits, truncated

    def gives_state(self, control: ChoiceControl, prompt: PromptVersion) -> bool:
        """Whether scoring `control` with `prompt` can give the LLM's state at the answer: a
        single-choice control on an engine that exposes it, a prompt that reads the label right
        after the text (a reasoning prompt reads it after rationales that differ per sample)."""
        return self.engine.capabilities.answer_state and not control.multiple and prompt.reasoning is None

    def _score_one(self, control: ChoiceControl, prompt: PromptVersion, text: str, task_demos: tuple[Demo, ...],
                   state: bool = False) -> tuple[np.ndarray, bool, tuple[str, ...], np.ndarray | None]:
        """`logits`, plus the rationales written first when the prompt reasons, and the state at
        the answer when asked for (`state`, where `gives_state`)."""
        rendered = render(control, prompt, codes=self.uses_codes(control), task_demos=task_demos)
        fitted = fit_text(self.engine, rendered, text)
        if state:
            logits, answer_state = label_logits_with_state(self.engine, rendered, control, fitted.text)
            return logits, fitted.truncated, (), answer_state
        if rendered.reasoning is None:
            return label_logits(self.engine, rendered, control, fitted.text), fitted.truncated, (), None
        rationales = tuple(self.rationale(rendered, fitted.text, seed) for seed in rendered.reasoning.seeds())
        samples = [label_logits(self.engine, rendered.with_rationale(r), control, fitted.text) for r in rationales]
        return pool_samples(samples, control.multiple), fitted.truncated, rationales, None

    def rationale(self, rendered: RenderedPrompt, text: str, seed: int) -> str:
        """One rationale the model writes for `text` (reason-then-select), one line."""
        reasoning = rendered.reasoning
        if not callable(getattr(self.engine, "rationale", None)):
            raise BadRequest(f"the engine {self.engine.model_id!r} cannot write rationales; "
                             "use a version without reasoning", field="model_version")
        return clean_rationale(self.engine.rationale(rendered.prefix, rendered.rationale_item(text),
                                                     max_tokens=reasoning.max_tokens,
                                                     temperature=reasoning.temperature, seed=seed))

    def task_demos(self, prompt: PromptVersion, texts: Sequence[str], embeddings: np.ndarray | None = None,
                   *, leave_out_self: bool = False) -> list[tuple[Demo, ...]]:
        """Each text's nearest demos of the prompt's pool (empty tuples for a prompt without a pool)."""
        if not prompt.nearest:
            return [() for _ in texts]
        return self.demos.for_texts(prompt.pool, list(texts), prompt.nearest, embeddings, leave_out_self=leave_out_self)

    def score_texts(self, control: ChoiceControl, prompt: PromptVersion, texts: Sequence[str],
                    task_demos: Sequence[tuple[Demo, ...]] | None = None, *,
                    keep: LogitSink | None = None, states: bool = False) -> list[Scored]:
        """`logits` of many texts, concurrently when the engine is a server; each with its token usage
        (none for a text the logit cache already had).

        `task_demos` overrides the per-task demos the prompt's pool would give (cross-validation
        picks them from the training folds only). `keep` is also given every text's logits
        (`/predict` keeps a version's for the project's next job); it is never read here, so a
        request's pace is always that of scoring. With `states` (where `gives_state`), each text
        also gets the LLM's state at the answer; a cached entry without one is scored again."""
        meter = getattr(self.engine, "usage", None)
        texts = list(texts)
        pairs = list(zip(texts, list(task_demos) if task_demos is not None else self.task_demos(prompt, texts)))
        states = states and self.gives_state(control, prompt)

        def one(pair: tuple[str, tuple[Demo, ...]]) -> Scored:
            with meter.scope() if meter else nullcontext() as usage:
                logits, truncated, rationales, state = self._score_one(control, prompt, *pair, state=states)
            return Scored(logits, truncated, meter.to_dict(usage) if meter else None, rationales, state)

        if prompt.evidence:  # evidence is per request: nothing to keep
            return map_tasks(one, pairs, self.engine.capabilities.parallel_requests)
        out = self._through_cache(control, prompt, pairs, one, states)
        if keep is not None:
            keep.put_many({self._cache_field(keep, control, prompt, *pair): (s.logits, s.truncated, s.state)
                           for pair, s in zip(pairs, out)})
        return out

    def _through_cache(self, control: ChoiceControl, prompt: PromptVersion, pairs: list[tuple[str, tuple[Demo, ...]]],
                       one: Callable[[tuple[str, tuple[Demo, ...]]], Scored], states: bool = False) -> list[Scored]:
        """`one` of each pair, but what the logit cache holds read from it and the rest written to
        it; with `states`, an entry without the state at the answer counts as not held."""
        if self.logit_cache is None:
            return map_tasks(one, pairs, self.engine.capabilities.parallel_requests)
        fields = [self._cache_field(self.logit_cache, control, prompt, *pair) for pair in pairs]
        out = [None if hit is None or (states and hit[2] is None) else Scored(hit[0], hit[1], state=hit[2])
               for hit in self.logit_cache.get_many(fields)]
        todo = [i for i, hit in enumerate(out) if hit is None]
        fresh = map_tasks(one, [pairs[i] for i in todo], self.engine.capabilities.parallel_requests)
        self.logit_cache.put_many({fields[i]: (s.logits, s.truncated, s.state) for i, s in zip(todo, fresh)})
        for i, s in zip(todo, fresh):
            out[i] = s
        return out

    def cached(self, control: ChoiceControl, prompt: PromptVersion, texts: Sequence[str],
               task_demos: Sequence[tuple[Demo, ...]]) -> np.ndarray:
        """Which texts the logit cache holds for this prompt (all False without a cache)."""
        if self.logit_cache is None:
            return np.zeros(len(texts), bool)
        return np.array(self.logit_cache.holds([self._cache_field(self.logit_cache, control, prompt, t, d)
                                                for t, d in zip(texts, task_demos)]), bool)

    def _cache_field(self, store: LogitSink, control: ChoiceControl, prompt: PromptVersion, text: str,
                     demos: tuple[Demo, ...]) -> bytes:
        rendered = render(control, prompt, codes=self.uses_codes(control), task_demos=demos)
        return store.field(control.multiple, rendered, text, self.engine.capabilities.max_context)

    def predict_control(
        self, control: ChoiceControl, recipe: ControlRecipe, texts: list[str], keep: LogitSink | None = None
    ) -> list[tuple[ControlPrediction, bool]]:
        """Predictions for one control over many texts; tasks run back to back so the prefix stays cached.

        A recipe without a calibrator gets content-free calibration of its prompt; one with a head
        pools the LLM's distribution with the head's. A head pooled with LLM weight 0 (the head
        alone won) runs no LLM pass: its answer would not count. `keep` receives the LLM's
        logits for the project's next job, with its states at the answer where the engine gives
        them (a job's head may learn from them; labeling.head); a head that reads them gets them."""
        if recipe.head is not None and not recipe.head.reads_llm:
            return self._predict_head_alone(control, recipe, texts)
        reads_state = recipe.head is not None and recipe.head.reads_state
        if reads_state and not self.gives_state(control, recipe.prompt):
            raise BadRequest(f"the engine {self.engine.model_id!r} does not give the LLM's state at the answer "
                             f"that the head of control {control.name!r} reads; use a version without it",
                             field="model_version")
        calibrator = self.calibrated(control, recipe)
        embeddings = self.embedder.encode(texts) if recipe.prompt.nearest else None
        kept_state = keep is not None and not recipe.prompt.evidence  # logits with evidence are not kept
        scored = self.score_texts(control, recipe.prompt, texts, self.task_demos(recipe.prompt, texts, embeddings),
                                  keep=keep, states=reads_state or kept_state)
        probs = [calibrator.apply(s.logits, control.multiple) for s in scored]
        if recipe.head is not None:
            states = np.stack([s.state for s in scored]) if reads_state else None
            probs = list(recipe.head.combine(np.stack(probs), self.head_embeddings(recipe.head, texts, embeddings),
                                             states))
        source = self.engine.capabilities.probability_source
        return [
            (decide(control, p, raw_probabilities(s.logits, control.multiple), source=source, usage=s.usage,
                    rationales=s.rationales, threshold=recipe.threshold), s.truncated)
            for p, s in zip(probs, scored)
        ]

    def _predict_head_alone(self, control: ChoiceControl, recipe: ControlRecipe,
                            texts: list[str]) -> list[tuple[ControlPrediction, bool]]:
        """The embedding head's answer at embedding speed; `raw_probabilities` are the head's too
        (no LLM ran), and `probability_source` says so."""
        embeddings = self.head_embeddings(recipe.head, texts)
        flat = np.full((len(texts), len(control.labels)), 0.5 if control.multiple else 1.0 / len(control.labels))
        probs = recipe.head.combine(flat, embeddings)  # weight 0: the LLM part does not enter
        return [(decide(control, p, p, source="embedding head", threshold=recipe.threshold), False) for p in probs]

    def head_embeddings(self, head: HeadWeights, texts: Sequence[str], bundled: np.ndarray | None = None) -> np.ndarray:
        """What `head` reads: the bundled MiniLM's embeddings (`bundled`, when already computed),
        or those of the fine-tuned body it was trained on."""
        if not is_tuned(head.embedder):
            return self.embedder.encode(list(texts)) if bundled is None else bundled
        return self.tuned_embedder(head.embedder).encode(list(texts))

    def tuned_embedder(self, name: str) -> Embedder:
        """The fine-tuned body `name`, rebuilt from the bundled MiniLM and its stored top layers;
        the last few stay loaded (each is a copy of the model)."""
        with self._tuned_lock:
            if name in self._tuned:
                self._tuned.move_to_end(name)
                return self._tuned[name]
        body = self.bodies(name) if self.bodies is not None else None
        if body is None:
            raise TunedBodyMissing(f"the fine-tuned embedding body {name} of this version is not in the store")
        embedder = tuned_embedder(self.embedder.model, body)
        with self._tuned_lock:
            self._tuned[name] = embedder
            while len(self._tuned) > TUNED_LOADED:
                self._tuned.popitem(last=False)
        return embedder

    def span_demos(self, prompt: SpanPrompt, texts: Sequence[str], *, leave_out_self: bool = False) -> list[tuple]:
        """Each text's nearest labelled texts of a span prompt's pool (none without a pool).
        `leave_out_self`: a text never sees its own labelled copy (judging a prompt on its pool)."""
        if not prompt.nearest or not prompt.pool:
            return [() for _ in texts]
        pool_emb = self.demos.pool_embeddings(prompt.pool)  # embedded once per pool, like choices' demos
        exclude = None
        if leave_out_self:
            where: dict[str, set[int]] = {}
            for j, demo in enumerate(prompt.pool):
                where.setdefault(clean_text(demo.text), set()).add(j)
            exclude = [where.get(clean_text(t), set()) for t in texts]
        idx = nearest_indices(pool_emb, self.embedder.encode([clean_text(t) for t in texts]), prompt.nearest, exclude)
        return [tuple(prompt.pool[j] for j in row) for row in idx]

    def predict(self, items: list[TaskTexts], label_task: LabelTask, version: ModelVersion,
                context: EditorContext | None = None, keep: LogitSink | None = None) -> list[dict]:
        """One prediction per task. With the editor's `context` (an interactive request), the
        controls the annotator answered are left out of the answer, a <Labels> control where
        they marked spans gets those spans' other occurrences instead of a fresh extraction, and
        an instruction they typed replaces the version's for the choice controls, which are then
        answered even if set (the editor sends the choices with the instruction it was typed after).

        Without an instruction, the choices the annotator set are evidence for the others: each
        remaining choice control's prompt shows them after the text (prompt.evidence_of), since
        what one control holds often says much about another (a review's topic and its tone). A
        typed instruction gets no evidence: it answers every control anew, the set ones included.
        `keep` receives the version's own logits (not those of a typed instruction or with
        evidence, which no job reads) for the project's next job."""
        answered = context.answered if context is not None else frozenset()
        marked = context.marked if context is not None else {}
        typed = context.instruction if context is not None else ""
        evidence = evidence_of(label_task.controls, context.choices) if context is not None and not typed else ()
        per_task: list[list[ControlPrediction]] = [[] for _ in items]
        warnings = [list(item.warnings) + label_task.skipped_messages() for item in items]
        for control in label_task.controls:
            if control.name in answered and not typed:  # an instruction asks for the choices anew
                continue
            texts = [item.texts[control.field] for item in items]
            recipe = version.recipe(control.name)
            recipe = recipe.instructed(control, typed) if typed else recipe.with_evidence(evidence)
            kept = None if typed else keep
            for i, (pred, truncated) in enumerate(self.predict_control(control, recipe, texts, kept)):
                per_task[i].append(pred)
                if truncated:
                    warnings[i].append(f"data.{control.field} truncated to fit the model's context")
        span_regions: list[list[dict]] = [[] for _ in items]
        span_scores: list[list[float]] = [[] for _ in items]
        for control in label_task.span_controls:
            if unsupported := span_support(self.engine, control):
                for w in warnings:
                    w.append(f"control {control.name!r} (Labels) skipped: {unsupported}")
                continue
            prompt = version.span_prompt(control.name)
            raws = [item.raw[control.field] for item in items]
            if marked.get(control.name):
                for i, raw in enumerate(raws):
                    spans = propose_occurrences(self.engine, control, prompt, raw, marked[control.name], self.embedder)
                    span_regions[i].extend(span_region(control, s) for s in spans)
                    span_scores[i].extend(s.score for s in spans)
                continue
            if control.name in answered:
                continue
            for i, (raw, demos) in enumerate(zip(raws, self.span_demos(prompt, raws))):
                spans = extract_spans(self.engine, control, prompt, raw, demos, self.embedder)
                span_regions[i].extend(span_region(control, s) for s in spans)
                span_scores[i].extend(s.score for s in spans)
        return [to_ls_prediction(p, version.label, w, label_task.text_areas, regions, scores)
                for p, w, regions, scores in zip(per_task, warnings, span_regions, span_scores)]
