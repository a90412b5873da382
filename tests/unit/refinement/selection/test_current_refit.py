"""The current version judged on its own items by cross-fitting what it learnt (pure parts)."""
from dataclasses import replace

import numpy as np

from backend.labeling.calibration import BATCH, Calibrator, fit_calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.prompt import Demo, PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.embedding_head import train_head
from backend.refinement.selection.current_refit import cross_fit_current
from backend.refinement.validation.crossval import CandidateResult, fold_ids


def _served(recipe, logits, embeddings):
    probs = recipe.calibrator.apply(logits, False)
    return recipe.head.combine(probs, embeddings) if recipe.head else probs


def _noise_fixture(n=120, dim=64, seed=0):
    """Labels that nothing can predict: the LLM logits and the embeddings are pure noise."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    logits = rng.normal(0, 0.3, (n, 2))
    emb = rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(n)]
    return gold, logits, emb, texts


def _overfit_head_version(gold, logits, emb, seen):
    """A version whose head memorised the items it was built from (like a real version does)."""
    calibrator = fit_calibrator(logits[seen], gold[seen])
    coef, intercept = train_head(emb[seen], gold[seen], 2)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.25)
    return ControlRecipe(PromptVersion(name="v1"), calibrator, head)


def test_a_version_is_not_flattered_by_the_items_it_memorised():
    gold, logits, emb, texts = _noise_fixture()
    seen = np.arange(len(gold)) < 80
    recipe = _overfit_head_version(gold, logits, emb, seen)
    current = CandidateResult("current", recipe, _served(recipe, logits, emb), gold)
    in_sample = (current.probs[seen].argmax(1) == gold[seen]).mean()
    assert in_sample > 0.85  # as served, it "knows" its own items

    refit, judge = cross_fit_current(current, recipe.calibrator, logits, emb, texts, seen, fold_ids(len(gold), 5))
    assert judge.all()
    cross_fitted = (refit.probs[seen].argmax(1) == gold[seen]).mean()
    assert cross_fitted < 0.7  # out of fold it is the coin it really is
    np.testing.assert_array_equal(refit.probs[~seen], current.probs[~seen])  # new items: as served
    assert refit.recipe is recipe and refit.metrics["judged_seen_items"] == 80


def test_the_refit_uses_only_the_other_folds_of_the_seen_items():
    gold, logits, emb, texts = _noise_fixture(n=60, seed=1)
    seen = np.arange(60) < 40
    folds = fold_ids(60, 4)
    recipe = _overfit_head_version(gold, logits, emb, seen)
    current = CandidateResult("current", recipe, _served(recipe, logits, emb), gold)
    refit, _ = cross_fit_current(current, recipe.calibrator, logits, emb, texts, seen, folds)
    f = folds[0]
    test, train = seen & (folds == f), seen & (folds != f)
    coef, intercept = train_head(emb[train], gold[train], 2)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), 0.25)
    expected = head.combine(fit_calibrator(logits[train], gold[train]).apply(logits[test], False), emb[test])
    np.testing.assert_allclose(refit.probs[test], expected, rtol=1e-6, atol=1e-9)


def test_fixed_demonstrations_and_searched_instructions_stay_out_of_the_judging():
    gold, logits, emb, texts = _noise_fixture(n=40, seed=2)
    seen = np.arange(40) < 20
    labels = ("a", "b")
    demos = tuple(Demo(texts[i], (labels[gold[i]],)) for i in (0, 1, 2))
    calibrator = fit_calibrator(logits[seen], gold[seen])
    few_shot = ControlRecipe(PromptVersion(name="4-shot", demos=demos), calibrator)
    current = CandidateResult("current", few_shot, calibrator.apply(logits, False), gold)
    _, judge = cross_fit_current(current, calibrator, logits, emb, texts, seen, fold_ids(40, 5))
    assert not judge[:3].any() and judge[3:].all()

    rewritten = ControlRecipe(PromptVersion(name="rewrite", instructions="Choose a when ..."), calibrator)
    current = CandidateResult("current", rewritten, calibrator.apply(logits, False), gold)
    _, judge = cross_fit_current(current, calibrator, logits, emb, texts, seen, fold_ids(40, 5))
    np.testing.assert_array_equal(judge, ~seen)
    # the same words as a wording chosen without labels (version 0's template): nothing to hide
    _, judge = cross_fit_current(current, calibrator, logits, emb, texts, seen, fold_ids(40, 5), fixed_wording=True)
    assert judge.all()


def test_content_free_calibration_learnt_nothing_and_is_kept():
    gold, logits, emb, texts = _noise_fixture(n=30, seed=3)
    seen = np.arange(30) < 15
    contextual = Calibrator(bias=(0.5, -0.5), method="contextual")
    recipe = ControlRecipe(PromptVersion(name="v0"), None)
    current = CandidateResult("current", recipe, contextual.apply(logits, False), gold)
    refit, judge = cross_fit_current(current, contextual, logits, emb, texts, seen, fold_ids(30, 5))
    assert judge.all()
    np.testing.assert_allclose(refit.probs, current.probs)


def test_multi_choice_refit_uses_per_label_calibration_and_one_vs_rest_head():
    from backend.labeling.calibration import fit_multilabel_calibrator
    from backend.refinement.candidates.one_vs_rest_head import train_one_vs_rest
    from backend.refinement.validation.control_kind import MULTIPLE
    from backend.refinement.validation.crossval import CandidateResult

    rng = np.random.default_rng(4)
    n, k = 60, 3
    gold = (rng.random((n, k)) < 0.3).astype(np.int8)
    logits = rng.normal(0, 1, (n, k))
    emb = rng.normal(size=(n, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(n)]
    seen = np.arange(n) < 40
    prior = Calibrator(bias=(0.2, -0.1, 0.0), method="contextual")
    calibrator = fit_multilabel_calibrator(logits[seen], gold[seen], prior)
    coef, intercept = train_one_vs_rest(emb[seen], gold[seen])
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), 0.5, one_vs_rest=True)
    recipe = ControlRecipe(PromptVersion(name="v1"), calibrator, head)
    current = CandidateResult("current", recipe, head.combine(calibrator.apply(logits, True), emb), gold, kind=MULTIPLE)
    folds = fold_ids(n, 5)
    refit, judge = cross_fit_current(current, calibrator, logits, emb, texts, seen, folds, prior=prior)
    assert judge.all() and refit.kind is MULTIPLE
    f = folds[0]
    test, train = seen & (folds == f), seen & (folds != f)
    c, i = train_one_vs_rest(emb[train], gold[train])
    fold_head = HeadWeights(tuple(map(tuple, c.tolist())), tuple(i.tolist()), 0.5, one_vs_rest=True)
    expected = fold_head.combine(fit_multilabel_calibrator(logits[train], gold[train], prior).apply(logits[test], True), emb[test])
    np.testing.assert_allclose(refit.probs[test], expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(refit.probs[~seen], current.probs[~seen])


def test_a_good_version_is_judged_about_as_well_as_on_new_items():
    """The other side: the refit on 4/5 of its items does not make a real skill look much worse."""
    rng = np.random.default_rng(5)
    n_seen, n_new, dim = 100, 600, 16
    centers = rng.normal(size=(2, dim))
    gold = rng.integers(0, 2, n_seen + n_new)
    emb = centers[gold] + rng.normal(0, 1.6, (len(gold), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = np.stack([gold == 0, gold == 1], axis=1) * 0.6 + rng.normal(0, 1.0, (len(gold), 2))
    texts = [f"text {i}" for i in range(len(gold))]
    seen = np.arange(len(gold)) < n_seen
    recipe = _overfit_head_version(gold, logits, emb, seen)
    current = CandidateResult("current", recipe, _served(recipe, logits, emb), gold)
    refit, _ = cross_fit_current(current, recipe.calibrator, logits, emb, texts, seen, fold_ids(len(gold), 5))
    on_new = (current.probs[~seen].argmax(1) == gold[~seen]).mean()
    cross_fitted = (refit.probs[seen].argmax(1) == gold[seen]).mean()
    in_sample = (current.probs[seen].argmax(1) == gold[seen]).mean()
    assert abs(cross_fitted - on_new) < 0.06 and abs(cross_fitted - on_new) < in_sample - on_new


def _signal_fixture(n=300, seed=5):
    """Labels the embeddings predict well (two clusters), LLM logits weakly informative."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    centre = rng.normal(size=(2, 16))
    emb = centre[gold] + rng.normal(0, 1.6, (n, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = np.stack([gold == 0, gold == 1], axis=1) * 0.5 + rng.normal(0, 1.0, (n, 2))
    return gold, logits, emb, [f"text {i}" for i in range(n)]


def test_a_refresh_refits_the_temperature_a_few_items_gave_and_never_judges_in_sample():
    """A version built from 20 items with a badly set temperature: refit on 300 items its log-loss
    falls (cross-fitted, so the gain is not in-sample), its labels stay, and the new temperature is
    the one the items want. A recipe that learnt nothing has nothing to refresh."""
    from dataclasses import replace

    from backend.refinement.selection.current_refit import refreshed_current
    from backend.refinement.selection.optimizer import no_worse

    gold, logits, emb, texts = _signal_fixture()
    few = np.arange(len(gold)) < 20
    coef, intercept = train_head(emb[few], gold[few], 2)
    calibrator = Calibrator.identity(2)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0, temperature=8.0)
    recipe = ControlRecipe(PromptVersion(name="v1"), calibrator, head)
    folds = fold_ids(len(gold), 5)
    current, _ = cross_fit_current(CandidateResult("current", recipe, _served(recipe, logits, emb), gold), calibrator,
                                   logits, emb, texts, few, folds)
    refreshed = refreshed_current(current, calibrator, logits, emb, texts, folds)
    assert refreshed.recipe.prompt == recipe.prompt and refreshed.recipe.head.weight_llm == 0.0
    assert refreshed.recipe.head.temperature < 2.0  # 8 flattened everything towards 0.5
    assert no_worse(refreshed, current, 0.05) and refreshed.metrics["no_worse"]
    assert refreshed.metrics["log_loss"] < refreshed.metrics["current_log_loss"] - 0.05
    served_after = _served(refreshed.recipe, logits, emb)
    assert (served_after.argmax(1) == gold).mean() > 0.8
    assert not no_worse(current, refreshed, 0.05)  # the other way round it is worse
    nothing_learnt = ControlRecipe(PromptVersion(name="v0"))
    assert refreshed_current(replace(current, recipe=nothing_learnt), calibrator, logits, emb, texts, folds) is None


def test_a_multi_choice_refresh_refits_per_label_calibration_head_and_temperature():
    """A multi-choice version from 20 items whose yes/no temperature (8) flattens every P(yes)
    towards 0.5: refit on 300 items it is sharper, its log-loss (summed over labels, cross-fitted)
    lower, and the micro-F1 rule lets it through; the other way round it does not pass."""
    from backend.labeling.calibration import fit_multilabel_calibrator
    from backend.refinement.candidates.one_vs_rest_head import train_one_vs_rest
    from backend.refinement.selection.current_refit import refreshed_current
    from backend.refinement.selection.optimizer import no_worse
    from backend.refinement.validation.control_kind import MULTIPLE
    from backend.refinement.validation.crossval import CandidateResult

    rng = np.random.default_rng(6)
    n, k = 300, 3
    gold = (rng.random((n, k)) < 0.35).astype(np.int8)
    centre = rng.normal(size=(k, 16))
    emb = gold @ centre + rng.normal(0, 0.8, (n, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = (2 * gold - 1) * 0.8 + rng.normal(0, 1.0, (n, k))
    texts = [f"text {i}" for i in range(n)]
    few = np.arange(n) < 20
    prior = Calibrator(bias=(0.0,) * k, method="contextual")
    calibrator = fit_multilabel_calibrator(logits[few], gold[few], prior)
    coef, intercept = train_one_vs_rest(emb[few], gold[few])
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), 0.5, temperature=8.0,
                       one_vs_rest=True)
    recipe = ControlRecipe(PromptVersion(name="v1"), calibrator, head)
    folds = fold_ids(n, 5)
    served = head.combine(calibrator.apply(logits, True), emb)
    current, _ = cross_fit_current(CandidateResult("current", recipe, served, gold, kind=MULTIPLE), calibrator, logits,
                                   emb, texts, few, folds, prior=prior)
    refreshed = refreshed_current(current, calibrator, logits, emb, texts, folds, prior=prior)
    assert refreshed.kind is MULTIPLE and refreshed.recipe.head.one_vs_rest
    assert refreshed.recipe.head.weight_llm == 0.5 and refreshed.recipe.head.temperature < 2.0
    assert refreshed.recipe.calibrator.method == "fitted-per-label" and refreshed.recipe.calibrator != calibrator
    assert no_worse(refreshed, current, 0.05)
    assert refreshed.metrics["log_loss"] < refreshed.metrics["current_log_loss"] - 0.1
    assert not no_worse(current, refreshed, 0.05)

    # a version that serves a threshold fitted on its 20 items gets it refit, judged cross-fitted
    with_threshold = replace(recipe, threshold=0.9)
    current, _ = cross_fit_current(CandidateResult("current", with_threshold, served, gold, kind=MULTIPLE), calibrator,
                                   logits, emb, texts, few, folds, prior=prior)
    np.testing.assert_array_equal(current.threshold, np.full(n, 0.9))
    refreshed = refreshed_current(current, calibrator, logits, emb, texts, folds, prior=prior)
    assert refreshed.recipe.threshold < 0.9 and refreshed.metrics["threshold"] == refreshed.recipe.threshold
    assert len(set(refreshed.threshold.tolist())) > 1  # one per fold, each fitted without it
    assert refreshed.metrics["micro_f1"] > current.metrics["micro_f1"]


def test_a_refreshed_mixture_head_gets_the_temperature_its_items_call_for_now():
    """A head trained on more items per label is sharper: the head temperature a mixture head was
    stored with (fitted on 20 items) is refit on all of them; a log-linear head has none."""
    from dataclasses import replace

    from backend.refinement.candidates.embedding_head import fit_head_temperature
    from backend.refinement.selection.current_refit import refreshed_current

    gold, logits, emb, texts = _signal_fixture()
    few = np.arange(len(gold)) < 20
    coef, intercept = train_head(emb[few], gold[few], 2)
    calibrator = Calibrator.identity(2)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.5, pooling="mix",
                       head_temperature=3.0)
    recipe = ControlRecipe(PromptVersion(name="v1"), calibrator, head)
    folds = fold_ids(len(gold), 5)
    current, _ = cross_fit_current(CandidateResult("current", recipe, _served(recipe, logits, emb), gold), calibrator,
                                   logits, emb, texts, few, folds)
    refreshed = refreshed_current(current, calibrator, logits, emb, texts, folds).recipe.head
    assert refreshed.head_temperature == fit_head_temperature(emb, gold, 2, False, folds) != 3.0
    assert (refreshed.pooling, refreshed.weight_llm) == ("mix", 0.5)
    log_linear = replace(recipe, head=replace(head, pooling="log", head_temperature=1.0))
    current = replace(current, recipe=log_linear)
    assert refreshed_current(current, calibrator, logits, emb, texts, folds).recipe.head.head_temperature == 1.0


def test_a_stacked_head_is_cross_fitted_and_refreshed_with_the_llm_features_it_reads():
    """Its head reads the LLM's calibrated probabilities: a refit must give it them, of the
    training items, or the features would not match the weights."""
    from backend.labeling.head import stacked_features
    from backend.refinement.selection.current_refit import refreshed_current

    rng = np.random.default_rng(4)
    n = 150
    gold = rng.integers(0, 2, n)
    logits = np.stack([(gold == 0) * 2.0, (gold == 1) * 2.0], axis=1) + rng.normal(0, 1.0, (n, 2))
    emb = rng.normal(size=(n, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = [f"text {i}" for i in range(n)]
    calibrator = fit_calibrator(logits, gold)
    seen = np.arange(n) < 100
    coef, intercept = train_head(stacked_features(emb[seen], calibrator.apply(logits[seen], False), 1.0), gold[seen], 2)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), 0.0, llm_scale=1.0)
    recipe = ControlRecipe(PromptVersion(name="v1"), calibrator, head)
    current = CandidateResult("current", recipe, _served(recipe, logits, emb), gold)
    assert (current.probs.argmax(1) == gold).mean() > 0.75  # the LLM's answer carries it

    folds = fold_ids(n, 5)
    refit, judge = cross_fit_current(current, calibrator, logits, emb, texts, seen, folds)
    assert judge.all() and (refit.probs[seen].argmax(1) == gold[seen]).mean() > 0.75
    refreshed = refreshed_current(current, calibrator, logits, emb, texts, folds)
    assert refreshed.recipe.head.llm_scale == 1.0 and len(refreshed.recipe.head.coef[0]) == 16 + 2
    assert (_served(refreshed.recipe, logits, emb).argmax(1) == gold).mean() > 0.75


def test_only_a_template_wording_with_calibration_set_without_labels_learnt_nothing():
    from backend.evaluation.datasets import Dataset
    from backend.labeling.label_config import parse_label_config
    from backend.labeling.templates import template_prompt
    from backend.refinement.selection.current_refit import learnt_nothing

    control = parse_label_config(Dataset("t", ("pos", "neg"), (), ()).label_config()).controls[0]
    demo = Demo("a text", "pos")
    head = HeadWeights(((0.0,), (0.0,)), (0.0, 0.0), 0.0)
    batch = Calibrator((0.1, -0.1), method=BATCH)
    nothing = [ControlRecipe(), ControlRecipe(template_prompt("plain", control)), ControlRecipe(calibrator=batch),
               ControlRecipe(calibrator=Calibrator.contextual(np.array([[0.3, -0.3]]), False)),
               ControlRecipe(calibrator=Calibrator.contextual(np.array([[0.3, -0.3]]), False).batched(
                   np.array([[0.7, 0.3], [0.6, 0.4]])))]
    learnt = [ControlRecipe(calibrator=replace(batch, method="fitted")), ControlRecipe(head=head),
              ControlRecipe(PromptVersion(demos=(demo,))), ControlRecipe(PromptVersion(pool=(demo,), nearest=1)),
              ControlRecipe(PromptVersion(name="rewrite", instructions="Say whether the text is pos or neg.")),
              ControlRecipe(threshold=0.4)]
    assert all(learnt_nothing(r, control) for r in nothing)
    assert not any(learnt_nothing(r, control) for r in learnt)
