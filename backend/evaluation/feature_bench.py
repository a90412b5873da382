"""Do the embedded LLM's hidden states beat, or add to, the sentence embedding of the embedding head?

The embedding head (a logistic regression over all-MiniLM-L6-v2 vectors) alone ties or beats the
LLM-based versions on some sets. A cheap lever would be features from the LLM itself (Gemma 3 270M's
final hidden state, mean- or last-token pooled) beside the sentence embedding. This bench measures,
on the first n train items of each set and the same test items: MiniLM alone (what the product
ships), Gemma alone, and MiniLM ⊕ Gemma (each block L2-normalised, the Gemma block optionally
centred on the train items and scaled by w), with the same logistic regression. The settings
reported for a set (pooling, centring, w, C) are chosen on the other sets only (leave one data set
out), never on that set's test items. No product code changes; it only measures.

One Gemma pass per text (pooling NONE: every token's hidden state) gives both poolings: the mean of
the token states and the last token's state, as llama.cpp's MEAN and LAST poolings compute them
(`pooling_check` compares them on a few texts). Texts longer than the context are cut in tokens
(a cut prompt loses its answer; `stats` counts the cuts).

Gemma reads either the text alone (`text` states) or the text as version 0's built-in prompt
shows it, up to the answer (`prompt` states): the last token's state there is the one the
scoring pass turns into the label logits, so a served version would get it without a second pass;
it is conditioned on the instruction and the label names.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.prompt import PromptVersion, clean_text, render
from ..metrics.single_label import summarize
from ..refinement.candidates.embedding_head import REGULARISATION_C, head_probs, train_head
from .datasets import Dataset

POOLINGS = ("mean", "last")
STATES = ("text", "prompt")  # what Gemma reads: the text alone, or version 0's prompt up to the answer
DEFAULT_WEIGHTS = (0.5, 1.0, 2.0)
DEFAULT_CS = (1.0, REGULARISATION_C, 100.0)
DEFAULT_BUDGETS = (25, 50, 200)
DEFAULT_SETS = ("sentence_polarity", "product_reviews", "sms_spam", "subjectivity", "clinc150")


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def gemma_block(train: np.ndarray, test: np.ndarray, centre: bool) -> tuple[np.ndarray, np.ndarray]:
    """The Gemma block of the train and test items: centred on the train items' mean (LLM states share
    one large common direction) when `centre`, then L2-normalised. Test items never inform it."""
    train, test = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if centre:
        mean = train.mean(axis=0)
        train, test = train - mean, test - mean
    return l2_rows(train), l2_rows(test)


def concat_blocks(first: np.ndarray, second: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """[first / |first|, weight · second / |second|], row by row."""
    return np.hstack([l2_rows(first), weight * l2_rows(second)])


def answer_prompt(dataset: Dataset) -> Callable[[str], str]:
    """A text as version 0's built-in prompt for the set's labels shows it to the scoring pass,
    up to the answer: the shared prefix, then the item the pass scores the cleaned text in."""
    control = parse_label_config(dataset.label_config()).controls[0]
    rendered = render(control, PromptVersion())
    return lambda text: rendered.prefix + rendered.item(clean_text(text))


def pool_tokens(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and last-token pooling of one text's token states (tokens × dims)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    return {"mean": tokens.mean(axis=0), "last": tokens[-1]}


@dataclass(frozen=True)
class Setting:
    """One way of building the head's features: MiniLM alone, Gemma alone or both, and the LR's C."""
    features: str  # "minilm", "gemma" or "concat"
    c: float
    pooling: str | None = None  # Gemma: "mean" or "last"
    centre: bool = False  # Gemma: centred on the train items before normalising
    weight: float | None = None  # concat: the Gemma block's scale

    @property
    def label(self) -> str:
        parts = [self.features]
        if self.pooling:
            parts.append(self.pooling + ("+centred" if self.centre else ""))
        if self.weight is not None:
            parts.append(f"w={self.weight:g}")
        return " ".join(parts) + f" C={self.c:g}"


def setting_grid(weights: Iterable[float] = DEFAULT_WEIGHTS, cs: Iterable[float] = DEFAULT_CS) -> list[Setting]:
    """Every setting measured, simplest first (ties in the LODO choice go to the earliest)."""
    weights, cs = list(weights), list(cs)
    grid = [Setting("minilm", c) for c in cs]
    grid += [Setting("gemma", c, p, centre) for centre in (False, True) for p in POOLINGS for c in cs]
    grid += [Setting("concat", c, p, centre, w) for centre in (False, True) for p in POOLINGS for w in weights
             for c in cs]
    return grid


def lodo_choice(scores: dict[str, dict[Setting, float]], held_out: str, candidates: list[Setting]) -> Setting:
    """The candidate with the best mean score over every set but `held_out` (the earliest on a tie):
    what is reported for `held_out` is chosen without looking at it."""
    others = [name for name in scores if name != held_out]
    if not others:
        raise ValueError("leave-one-set-out needs at least one other set")
    means = [np.mean([scores[name][s] for name in others]) for s in candidates]
    return candidates[int(np.argmax(means))]  # argmax returns the first of equal maxima


def features(setting: Setting, minilm: tuple[np.ndarray, np.ndarray],
             gemma: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) feature matrices of a setting; `gemma` maps a pooling to its (train, test) states."""
    if setting.features == "minilm":
        return minilm
    g_train, g_test = gemma_block(*gemma[setting.pooling], setting.centre)
    if setting.features == "gemma":
        return g_train, g_test
    return (concat_blocks(minilm[0], g_train, setting.weight), concat_blocks(minilm[1], g_test, setting.weight))


class Clock:
    """Wall and CPU seconds spent, and texts encoded, by one encoder."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.texts = 0

    def add(self, wall: float, cpu: float, texts: int) -> None:
        self.wall, self.cpu, self.texts = self.wall + wall, self.cpu + cpu, self.texts + texts

    def per_100(self) -> dict:
        n = max(self.texts, 1)
        return {"texts": self.texts, "wall_seconds_per_100": round(100 * self.wall / n, 2),
                "cpu_seconds_per_100": round(100 * self.cpu / n, 2)}


class MiniLMFeatures:
    """The product's embedder (unit vectors), cached per text for the run."""

    def __init__(self, embedder):
        self.embedder, self.cache, self.clock = embedder, {}, Clock()

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            wall, cpu = time.perf_counter(), time.process_time()
            vectors = self.embedder.encode(missing)
            self.clock.add(time.perf_counter() - wall, time.process_time() - cpu, len(missing))
            self.cache.update(zip(missing, vectors))
        return np.stack([self.cache[t] for t in texts])


class GemmaFeatures:
    """Gemma's final hidden states (one pass per text, pooling NONE), mean- and last-pooled, cached per
    text for the run. Texts over `n_ctx` tokens are cut to their first `n_ctx` tokens."""

    def __init__(self, model_path: str, n_ctx: int = 512, n_threads: int = 1):
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(model_path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                                   n_ubatch=n_ctx, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                                   n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
        self.n_ctx, self.cache, self.clock = n_ctx, {}, Clock()
        self.tokens = self.truncated = 0

    def _one(self, text: str) -> dict[str, np.ndarray]:
        n_tokens = len(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
        self.tokens += min(n_tokens, self.n_ctx)
        self.truncated += n_tokens > self.n_ctx
        states = self.llm.embed(text, normalize=False, truncate=True)  # truncate: the first n_batch tokens
        return pool_tokens(np.asarray(states))

    def encode(self, texts: list[str], frame: Callable[[str], str] | None = None) -> dict[str, np.ndarray]:
        """Pooled states of `texts`, each read as `frame(text)` when a frame is given."""
        texts = [frame(t) for t in texts] if frame else list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        wall, cpu = time.perf_counter(), time.process_time()
        for text in missing:
            self.cache[text] = self._one(text)
        if missing:
            self.clock.add(time.perf_counter() - wall, time.process_time() - cpu, len(missing))
        return {p: np.stack([self.cache[t][p] for t in texts]) for p in POOLINGS}

    def stats(self) -> dict:
        return {**self.clock.per_100(), "mean_tokens": round(self.tokens / max(self.clock.texts, 1), 1),
                "truncated": self.truncated, "n_ctx": self.n_ctx}


def pooling_check(model_path: str, texts: list[str], n_ctx: int = 512) -> dict[str, float]:
    """Largest |difference| between our pooling of the NONE states and llama.cpp's own MEAN and LAST
    pooling, on `texts` (should be ~0: float noise)."""
    import llama_cpp

    ours = GemmaFeatures(model_path, n_ctx)
    out = {}
    for name, kind in (("mean", llama_cpp.LLAMA_POOLING_TYPE_MEAN), ("last", llama_cpp.LLAMA_POOLING_TYPE_LAST)):
        native = llama_cpp.Llama(model_path=str(model_path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                                 n_ubatch=n_ctx, pooling_type=kind, n_threads=1, n_threads_batch=1, verbose=False)
        diffs = [np.abs(np.asarray(native.embed(t, normalize=False)) - ours._one(t)[name]).max() for t in texts]
        scale = max(np.abs(ours._one(t)[name]).max() for t in texts)
        out[name] = float(max(diffs) / scale)  # relative to the largest state value
        native.close()
    ours.llm.close()
    return out


def score_grid(train: Dataset, test: Dataset, n: int, grid: list[Setting], minilm: MiniLMFeatures,
               gemma: GemmaFeatures, states: str = "text") -> dict[Setting, dict]:
    """Test accuracy and macro-F1 of every setting, trained on the first n train items."""
    texts, gold = list(train.texts[:n]), np.asarray(train.gold[:n])
    test_texts, test_gold, n_labels = list(test.texts), np.asarray(test.gold), len(test.labels)
    mini = (minilm.encode(texts), minilm.encode(test_texts))
    frame = answer_prompt(train) if states == "prompt" else None
    g_train, g_test = gemma.encode(texts, frame), gemma.encode(test_texts, frame)
    gem = {p: (g_train[p], g_test[p]) for p in POOLINGS}
    out = {}
    for setting in grid:
        x_train, x_test = features(setting, mini, gem)
        coef, intercept = train_head(x_train, gold, n_labels, c=setting.c)
        metrics = summarize(test_gold, head_probs(coef, intercept, x_test))
        out[setting] = {"macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"]}
    return out


def lodo_rows(results: dict[str, dict[int, dict[Setting, dict]]], grid: list[Setting]) -> list[dict]:
    """One row per set and budget: MiniLM as shipped (C = REGULARISATION_C), and for MiniLM, Gemma
    and concat the setting chosen on the other sets at the same budget (mean macro-F1), with the best
    concat on this set's own test items beside it (an optimistic bound, not a result)."""
    baseline = Setting("minilm", REGULARISATION_C)
    families = {f: [s for s in grid if s.features == f] for f in ("minilm", "gemma", "concat")}
    rows = []
    for name, by_budget in results.items():
        for n, scored in by_budget.items():
            macro = {other: {s: results[other][n][s]["macro_f1"] for s in grid} for other in results}
            row = {"set": name, "labels": n, "minilm": {**scored[baseline], "setting": baseline.label}}
            for family, candidates in families.items():
                chosen = lodo_choice(macro, name, candidates)
                row[f"{family}_lodo"] = {**scored[chosen], "setting": chosen.label}
            for pooling in POOLINGS:
                plain = Setting("gemma", REGULARISATION_C, pooling)
                row[f"gemma_{pooling}"] = {**scored[plain], "setting": plain.label}
            best = max(families["concat"], key=lambda s: scored[s]["macro_f1"])
            row["concat_oracle"] = {**scored[best], "setting": best.label}
            row["gain"] = round(row["concat_lodo"]["macro_f1"] - row["minilm"]["macro_f1"], 4)
            rows.append(row)
    return rows


def feature_bench(sets: list[tuple[Dataset, Dataset]], minilm: MiniLMFeatures, gemma: GemmaFeatures,
                  budgets: list[int], grid: list[Setting], states: Iterable[str] = ("text",),
                  on_set: Callable[[str, dict], None] = lambda name, scores: None) -> dict:
    """Every setting's test scores per kind of Gemma states, set and budget, then the
    leave-one-set-out rows (each row names its states)."""
    rows, grids = [], {}
    for source in states:
        results: dict[str, dict[int, dict[Setting, dict]]] = {}
        for train, test in sets:
            results[train.name] = {n: score_grid(train, test, n, grid, minilm, gemma, source) for n in budgets}
            on_set(f"{source} {train.name}", results[train.name])
        rows += [{"states": source, **row} for row in (lodo_rows(results, grid) if len(results) > 1 else [])]
        grids[source] = {name: {str(n): {s.label: v for s, v in scored.items()} for n, scored in by.items()}
                         for name, by in results.items()}
    return {"rows": rows, "grid": grids, "timing": {"minilm": minilm.clock.per_100(), "gemma": gemma.stats()}}


TABLE_HEADER = ("| Gemma states | set | labels | MiniLM (shipped) F1 / acc | MiniLM LODO-C F1 | Gemma mean F1 | "
                "Gemma last F1 | Gemma LODO F1 / acc | concat LODO F1 / acc | gain vs shipped | concat LODO setting | "
                "Gemma LODO setting | concat best-on-test F1 (bound) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_row(row: dict) -> str:
    m, g, c = row["minilm"], row["gemma_lodo"], row["concat_lodo"]
    return (f"| {row.get('states', 'text')} | {row['set']} | {row['labels']} | "
            f"{m['macro_f1']:.3f} / {m['accuracy']:.3f} | "
            f"{row['minilm_lodo']['macro_f1']:.3f} | {row['gemma_mean']['macro_f1']:.3f} | "
            f"{row['gemma_last']['macro_f1']:.3f} | {g['macro_f1']:.3f} / {g['accuracy']:.3f} | "
            f"{c['macro_f1']:.3f} / {c['accuracy']:.3f} | {row['gain']:+.3f} | {c['setting']} | {g['setting']} | "
            f"{row['concat_oracle']['macro_f1']:.3f} |")
