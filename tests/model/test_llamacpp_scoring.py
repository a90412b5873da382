"""The real embedded Gemma 3 270M through llama.cpp: exact label log-likelihoods, cached prefix."""
import math

import numpy as np
import pytest

from backend.engines.base import Branch
from backend.engines.llamacpp import log_softmax
from backend.evaluation.datasets import load_dataset
from backend.evaluation.run import evaluate
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService, extract_texts
from tests.conftest import DATASETS, load_fixture

pytestmark = pytest.mark.model


def _reference_loglik(model_path, segments, continuation_tokens):
    """log P(continuation | segments) from llama.cpp's own per-position logits (logits_all=True),
    with a fresh model and the engine's batch schedule (each segment one batch, then the label's
    inner tokens as one batch, as the label tree evaluates them)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=512, logits_all=True, verbose=False)
    for segment in segments:
        llm.eval(list(segment))
    if len(continuation_tokens) > 1:
        llm.eval(list(continuation_tokens[:-1]))
    n_context = sum(len(s) for s in segments)
    total = 0.0
    for k, token in enumerate(continuation_tokens):
        row = llm.scores[n_context + k - 1]
        total += float(log_softmax(np.asarray(row))[token])
    return total


# llama.cpp's numbers depend on the shape of the batch a token is evaluated in: ~1e-3 between the
# small batches compared here (larger batches take other kernels and can differ by ~0.1). Whether a
# node sees a sibling branch is tested exactly, below.
BATCH_NOISE = 5e-3


def test_trie_scores_equal_full_sequence_log_likelihoods(engine, settings):
    prefix, item = "Classify the topic.\n\n", "Text: the match ended in a draw after extra time\nLabel:"
    labels = (" sports and games", " sports news", " politics", " technology and science")
    (scores,) = engine.score(prefix, item, [Branch("", labels)])
    segments = [engine._tokenize(prefix, True), engine._tokenize(item, False)]
    for label, got in zip(labels, scores):
        want = _reference_loglik(settings.model_path, segments, engine._tokenize(label, False))
        assert got == pytest.approx(want, abs=BATCH_NOISE), label
    assert any(len(engine._tokenize(l, False)) > 1 for l in labels)  # multi-token labels were exercised


def test_sibling_branches_of_the_label_tree_stay_invisible(engine):
    """The label tree's mask: a label's score does not move by a bit when the other branches of
    the same batch change content (same shape), so no node sees a sibling's tokens."""
    prefix, item = "Pick the intent.\n\n", "Text: please move my dentist appointment to friday\nIntent:"
    target = " calendar_update"

    first = [" travel_query", " bank_alarm", " music_update"]
    second = [" weather_query", " paris_alarm", " pizza_update"]
    for word in first + second:
        assert len(engine._tokenize(word, False)) == len(engine._tokenize(target, False)), word
    (a,) = engine.score(prefix, item, [Branch("", (target, *first))])
    (b,) = engine.score(prefix, item, [Branch("", (target, *second))])
    assert a[0] == b[0]
    assert not np.allclose(a[1:], b[1:], atol=0.5)  # the siblings themselves were scored differently


def test_a_label_tree_split_over_several_batches_gives_the_same_scores(engine, monkeypatch):
    prefix, item = "Pick the intent.\n\n", "Text: what is my balance\nIntent:"
    labels = tuple(f" {a}_{b}" for a in ("account", "card", "loan") for b in ("balance", "limit", "interest_rate"))
    (whole,) = engine.score(prefix, item, [Branch("", labels)])
    monkeypatch.setattr(engine, "_n_seq", 3)  # two leaves per batch
    before = engine.tokens_evaluated
    (split,) = engine.score(prefix, item, [Branch("", labels)])
    np.testing.assert_allclose(split, whole, atol=BATCH_NOISE)
    assert engine.tokens_evaluated - before > 2 * len(labels)  # shared nodes were evaluated again


def test_scores_do_not_depend_on_what_the_cache_held_before(engine):
    branch = [Branch("", (" yes", " no"))]
    first = engine.score("Question.\n\n", "Text: a\nLabel:", branch)[0]
    engine.score("Something else entirely.\n\n", "Text: b b b\nLabel:", branch)
    engine.score("Question.\n\n", "Text: a longer text here\nLabel:", branch)
    again = engine.score("Question.\n\n", "Text: a\nLabel:", branch)[0]
    np.testing.assert_array_equal(first, again)


def test_the_shared_prefix_is_evaluated_once(engine):
    prefix = "Instructions that are long enough to matter. " * 20 + "\n\n"
    branch = [Branch("", (" a", " b"))]
    engine.score(prefix, "Text: first\nLabel:", branch)
    before = engine.tokens_evaluated
    engine.score(prefix, "Text: second\nLabel:", branch)
    assert engine.tokens_evaluated - before < engine.count_tokens(prefix) / 4


def test_nearest_demos_keep_the_instructions_cached_and_scores_cache_independent(engine):
    from backend.labeling.prompt import Demo, PromptVersion, render
    from backend.labeling.recipe import ControlRecipe
    from backend.refinement.candidates.few_shot import nearest_shot

    control = parse_label_config(load_fixture("predict-choices-single.json")["label_config"]).controls[0]
    pool = (Demo("a wonderful, moving film", ("Positive",)), Demo("dull and far too long", ("Negative",)),
            Demo("the film opens on friday", ("Neutral",)), Demo("i loved every minute", ("Positive",)))
    prompt = nearest_shot(PromptVersion(instructions="Decide the sentiment of each text. " * 8), pool, 2, "2-nearest")
    service = LabelingService(engine)
    texts = ["what a wonderful film, i loved it", "it opens on friday in most cities"]
    demos = service.task_demos(prompt, texts)
    assert [d.labels for d in demos[0]] == [("Positive",), ("Positive",)]  # its two nearest
    first = service.score_texts(control, prompt, texts)[0].logits  # the cache now ends with texts[1]
    before = engine.tokens_evaluated
    again = service.score_texts(control, prompt, texts[:1])[0].logits
    rendered = render(control, prompt.shared, task_demos=demos[0])
    per_task = engine.tokens_evaluated - before
    assert per_task < engine.count_tokens(rendered.prefix + rendered.item(texts[0]))
    assert per_task >= engine.count_tokens(rendered.item(texts[0])) - 2  # its demos are paid per task
    np.testing.assert_array_equal(first, again)
    served = service.predict_control(control, ControlRecipe(prompt), texts)
    assert all(pred.chosen[0] in control.labels for pred, _ in served)


def test_rationales_are_one_line_reproducible_and_leave_scores_cache_independent(engine):
    """Reason-then-select on the real model: the rationale is decoded on the scoring cache, so
    the instructions stay cached, the same seed gives the same text whatever ran before, and the
    labels scored after it get the same numbers as from an empty cache."""
    from backend.labeling.prompt import PromptVersion, render
    from backend.labeling.reasoning import Reasoning

    control = parse_label_config(load_fixture("predict-choices-single.json")["label_config"]).controls[0]
    prompt = PromptVersion(instructions="Decide the sentiment of each review. " * 8, reasoning=Reasoning(1, 24))
    service = LabelingService(engine, calibration="none")
    text = "the plot was thin but the actors were wonderful"
    greedy = service.logits(control, prompt, text)[0]
    rendered = render(control, prompt)
    first = engine.rationale(rendered.prefix, rendered.rationale_item(text), max_tokens=24)
    assert first.strip() and "\n" not in first and engine.count_tokens(first) <= 24 + 1
    before = engine.tokens_evaluated
    engine.rationale(rendered.prefix, rendered.rationale_item("another review"), max_tokens=24)
    assert engine.tokens_evaluated - before < engine.count_tokens(rendered.prefix) / 2  # instructions cached
    engine.score("Something else entirely.\n\n", "Text: b b b\nLabel:", [Branch("", (" yes", " no"))])
    assert engine.rationale(rendered.prefix, rendered.rationale_item(text), max_tokens=24) == first
    np.testing.assert_array_equal(service.logits(control, prompt, text)[0], greedy)
    sampled = {engine.rationale(rendered.prefix, rendered.rationale_item(text), max_tokens=24, temperature=1.0,
                                seed=seed) for seed in range(4)}
    assert len(sampled) > 1  # self-consistency's samples differ
    pooled = service.logits(control, PromptVersion(reasoning=Reasoning(3, 16, 0.7)), text)[0]
    assert np.exp(pooled).sum() == pytest.approx(1.0)  # the mean distribution over the samples


@pytest.mark.parametrize("fixture", ["predict-choices-single.json", "predict-choices-multi.json"])
def test_predictions_are_labels_from_the_set_with_probabilities(engine, fixture):
    body = load_fixture(fixture)
    label_task = parse_label_config(body["label_config"])
    (control,) = label_task.controls
    service = LabelingService(engine)
    items = extract_texts(body["tasks"], label_task, 5000)
    results = service.predict(items, label_task, ModelVersion("t.v0"))
    assert len(results) == len(body["tasks"])
    for item in results:
        (region,) = item["result"]
        assert set(region["value"]["choices"]) <= set(control.labels)
        probs = region["probabilities"]
        assert list(probs) == list(control.labels)
        assert all(0 <= p <= 1 for p in probs.values())
        if not control.multiple:
            assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
            assert sum(region["raw_probabilities"].values()) == pytest.approx(1, abs=1e-4)
            assert item["score"] == pytest.approx(max(probs.values()), abs=1e-6)
        assert 0 < item["score"] <= 1


def test_calibrated_accuracy_on_200_subjectivity_items_is_clearly_above_chance(engine):
    data = load_dataset(DATASETS / "subjectivity" / "test.jsonl", limit=200)
    report = evaluate(LabelingService(engine), data)
    n, acc = report["n"], report["calibrated"]["accuracy"]
    k = round(acc * n)
    # one-sided binomial test against guessing (p = 0.5)
    p_value = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    assert p_value < 0.01, report
    assert report["calibrated"]["macro_f1"] > 0.5, report


def test_a_rating_is_a_star_in_range_with_its_distribution(engine):
    """A <Rating> beside a <Choices>: one prediction with both regions; the star is the most
    probable one and the expected rating lies between the first and the last star."""
    label_task = parse_label_config(
        '<View><Text name="review" value="$text"/><Rating name="quality" toName="review" maxRating="4"/>'
        '<Choices name="tone" toName="review"><Choice value="positive"/><Choice value="negative"/></Choices></View>')
    tasks = [{"data": {"text": t}} for t in ("Terrible. Broke after a day and support never answered.",
                                             "Works exactly as described, I love it.")]
    results = LabelingService(engine).predict(extract_texts(tasks, label_task, 5000), label_task, ModelVersion("t.v0"))
    for item in results:
        rating, tone = item["result"]
        assert (rating["type"], rating["from_name"], tone["type"]) == ("rating", "quality", "choices")
        probs = rating["probabilities"]
        assert list(probs) == ["1", "2", "3", "4"] and sum(probs.values()) == pytest.approx(1, abs=1e-4)
        assert rating["value"]["rating"] in (1, 2, 3, 4)
        assert rating["score"] == pytest.approx(probs[str(rating["value"]["rating"])], abs=1e-6)
        assert 1 <= rating["expected_rating"] <= 4
        assert item["score"] == pytest.approx(rating["score"] * tone["score"], abs=1e-5)


def test_a_taxonomy_answer_is_always_a_selectable_path(engine):
    label_task = parse_label_config(
        '<View><Text name="text" value="$text"/><Taxonomy name="topic" toName="text">'
        '<Choice value="Sports"><Choice value="Football"/><Choice value="Tennis"/></Choice>'
        '<Choice value="Politics"><Choice value="Elections" alias="vote"/></Choice></Taxonomy></View>')
    (control,) = label_task.controls
    tasks = [{"data": {"text": t}} for t in ("The striker scored twice.", "Voters go to the polls on Sunday.", "ok")]
    for item in LabelingService(engine).predict(extract_texts(tasks, label_task, 5000), label_task, ModelVersion("t.v0")):
        (region,) = item["result"]
        (path,) = region["value"]["taxonomy"]
        assert tuple(path) in control.paths and region["type"] == "taxonomy"
        assert sum(region["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert region["score"] == pytest.approx(region["probabilities"][control.labels[control.paths.index(tuple(path))]],
                                                abs=1e-6)
