"""The embedding head candidate: training over the full label set, and the pooled head judged on
held-out folds."""
import warnings

import numpy as np

from backend.labeling.head import HeadWeights
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.embedding_head import C_GRID, REGULARISATION_C, cross_chosen, evaluate_head, train_head
from backend.refinement.validation.crossval import CandidateResult, fold_ids


def test_train_head_covers_labels_absent_from_ground_truth():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    gold = np.array([0, 2] * 20)
    coef, intercept = train_head(emb, gold, 3)
    assert coef.shape == (3, 8)
    probs = HeadWeights(tuple(map(tuple, coef)), tuple(intercept), 0.0).head_logits(emb)
    assert (probs.argmax(1) != 1).all()


def test_a_head_with_more_labels_than_half_its_items_trains_without_a_warning():
    """Many intents, few labels each: the worker's log must not get a warning per fit."""
    rng = np.random.default_rng(1)
    gold = np.r_[np.arange(20), [0, 1, 2, 3, 4]]  # 25 labelled items of 20 intents, of 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coef, _ = train_head(rng.normal(size=(25, 4)), gold, 30)
    assert coef.shape == (30, 4) and coef[:20].any() and not coef[20:].any()


def test_pooled_head_is_not_worse_than_the_better_part_on_held_out_data():
    """Deterministic fixture: the LLM knows labels 0/1 apart, the embeddings know 1/2 apart."""
    rng = np.random.default_rng(7)
    n = 300
    gold = rng.integers(0, 3, n)
    llm_logits = np.stack([(gold == 0) * 2.0, (gold != 0) * 2.0, (gold != 0) * 2.0], axis=1) + rng.normal(0, 0.8, (n, 3))
    llm_probs = np.exp(llm_logits) / np.exp(llm_logits).sum(1, keepdims=True)
    emb = np.stack([(gold == 2) * 1.0, (gold != 2) * 1.0], axis=1) + rng.normal(0, 0.35, (n, 2))
    llm = CandidateResult("llm", ControlRecipe(), llm_probs, gold)
    head, pooled, mixed, _ = evaluate_head(llm, emb, fold_ids(n, 5))
    assert pooled.metrics["macro_f1"] >= max(head.metrics["macro_f1"], llm.metrics["macro_f1"])
    assert pooled.metrics["macro_f1"] > 0.9
    assert 0 < pooled.recipe.head.weight_llm < 1
    assert mixed.metrics["macro_f1"] > max(head.metrics["macro_f1"], llm.metrics["macro_f1"])
    assert mixed.recipe.head.pooling == "mix" and 0 < mixed.recipe.head.weight_llm < 1


def test_a_balanced_head_finds_a_rare_label_the_plain_one_drowns():
    """30 items, 4 of the rare label, whose embeddings are close to the common label's."""
    rng = np.random.default_rng(3)
    gold = np.array([1] * 4 + [0] * 26)
    rng.shuffle(gold)
    emb = rng.normal(0, 1, (30, 8)) + np.outer(gold, np.full(8, 0.6))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    llm = CandidateResult("llm", ControlRecipe(), np.full((30, 2), 0.5), gold)
    plain = evaluate_head(llm, emb, fold_ids(30, 5))[0]
    balanced, pooled, mixed, stacked = evaluate_head(llm, emb, fold_ids(30, 5), balanced=True)
    assert (balanced.name, pooled.name, mixed.name, stacked.name) == (
        "head-balanced", "llm+head-balanced", "llm+head-balanced-mix", "llm+head-balanced-stacked")
    assert balanced.probs.argmax(1).sum() > plain.probs.argmax(1).sum()  # it does say "rare"
    assert balanced.metrics["macro_f1"] > plain.metrics["macro_f1"]
    assert balanced.recipe.head.balanced and not plain.recipe.head.balanced
    again = ControlRecipe.from_dict(balanced.recipe.to_dict())  # stored with the version, refit the same way
    assert again.head.balanced and again.to_dict() == balanced.recipe.to_dict()


def test_a_stacked_head_trusts_the_llm_on_the_label_it_knows_and_the_embedding_on_the_others():
    """The LLM tells label 0 from the rest and is noise between 1 and 2; the embedding tells 1 from
    2 and is noise on 0. One pooling weight for every label cannot use both; stacking can."""
    rng = np.random.default_rng(11)
    n = 300
    gold = rng.integers(0, 3, n)
    llm_logits = np.stack([(gold == 0) * 3.0, np.zeros(n), np.zeros(n)], axis=1) + rng.normal(0, 0.7, (n, 3))
    llm_probs = np.exp(llm_logits) / np.exp(llm_logits).sum(1, keepdims=True)
    emb = np.stack([(gold == 1) * 1.0, (gold == 2) * 1.0], axis=1) * (gold != 0)[:, None] + rng.normal(0, 0.3, (n, 2))
    llm = CandidateResult("llm", ControlRecipe(), llm_probs, gold)
    head, pooled, mixed, stacked = evaluate_head(llm, emb, fold_ids(n, 5))
    assert stacked.name == "llm+head-stacked"
    assert stacked.metrics["macro_f1"] > max(r.metrics["macro_f1"] for r in (llm, head, pooled, mixed))
    served = stacked.recipe.head
    assert served.llm_scale > 0 and served.weight_llm == 0.0 and served.reads_llm  # the LLM pass still runs
    again = ControlRecipe.from_dict(stacked.recipe.to_dict())
    assert again.head.llm_scale == served.llm_scale and again.to_dict() == stacked.recipe.to_dict()
    probs = again.head.combine(llm_probs, emb)  # as the service serves it: the LLM's probabilities and the text's embedding
    assert np.allclose(probs.sum(1), 1.0) and (probs.argmax(1) == gold).mean() > 0.9
    flat = again.head.combine(np.full((n, 3), 1 / 3), emb)  # without the LLM's answer label 0 is lost
    assert (flat.argmax(1) == gold)[gold == 0].mean() < (probs.argmax(1) == gold)[gold == 0].mean()


def test_cross_chosen_judges_each_fold_by_the_setting_best_on_the_others():
    gold = np.array([0, 1] * 10)
    folds = np.repeat(np.arange(4), 5)
    right = np.eye(2)[gold] * 0.8 + 0.1
    wrong = np.eye(2)[1 - gold] * 0.8 + 0.1
    good = right.copy()
    good[folds == 3] = wrong[folds == 3]  # best on folds 0-2, wrong on fold 3
    bad = wrong.copy()
    bad[folds == 3] = right[folds == 3]  # right on fold 3 only
    raw, chosen = cross_chosen({"good": good, "bad": bad}, gold, folds)
    assert chosen == "good"
    assert np.array_equal(raw, good)  # fold 3 is judged by the setting the other folds chose: no peeking


def test_the_regularisation_a_job_chose_is_kept_and_used_by_a_refit():
    """Few items with a clear signal: the default regularisation flattens the head's answers, so
    the job chooses a weaker one among C_GRID, stores it with the weights, and a refresh trains
    with it again."""
    from backend.labeling.version_summary import recipe_facts
    from backend.refinement.selection.current_refit import _refit_head
    from backend.refinement.validation.control_kind import SINGLE

    rng = np.random.default_rng(0)
    n = 30
    gold = np.arange(n) % 3
    emb = rng.normal(size=(n, 64)) + 5.0 * np.eye(64)[gold]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    llm = CandidateResult("llm", ControlRecipe(), np.full((n, 3), 1 / 3), gold)
    head, pooled, mixed, stacked = evaluate_head(llm, emb, fold_ids(n, 5))
    chosen = head.recipe.head.c
    assert chosen in C_GRID and chosen != REGULARISATION_C
    assert {r.recipe.head.c for r in (pooled, mixed, stacked)} == {chosen}
    again = ControlRecipe.from_dict(head.recipe.to_dict()).head
    assert again.c == chosen
    assert f"C = {chosen:g}" in recipe_facts(head.recipe)["head"]  # what /versions shows
    refit = _refit_head(again, emb, gold, SINGLE)
    assert np.allclose(refit.coef, train_head(emb, gold, 3, c=chosen)[0], atol=1e-5)
    assert not np.allclose(refit.coef, train_head(emb, gold, 3)[0], atol=1e-3)
    old = {k: v for k, v in head.recipe.head.to_dict().items() if k != "c"}  # a version stored before the choice
    assert HeadWeights.from_dict(old).c is None
    assert np.allclose(_refit_head(HeadWeights.from_dict(old), emb, gold, SINGLE).coef, train_head(emb, gold, 3)[0],
                       atol=1e-5)


def test_a_stored_regularisation_must_be_a_positive_number():
    base = HeadWeights(((0.0,),), (0.0,), 0.0).to_dict()
    for bad in (0, -1.0, "10", True):
        try:
            HeadWeights.from_dict({**base, "c": bad})
        except ValueError as exc:
            assert "head.c" in str(exc)
        else:
            raise AssertionError(f"c={bad!r} was accepted")
