"""The embedding head's pure parts: training over the full label set, pooling, serialisation."""
from dataclasses import replace

import numpy as np
import pytest

from backend.labeling.head import HeadWeights, pool, unseen_label_mass
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.embedding_head import evaluate_head, train_head
from backend.refinement.validation.crossval import CandidateResult, fold_ids


def test_train_head_covers_labels_absent_from_ground_truth():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    gold = np.array([0, 2] * 20)
    coef, intercept = train_head(emb, gold, 3)
    assert coef.shape == (3, 8)
    probs = HeadWeights(tuple(map(tuple, coef)), tuple(intercept), 0.0).head_logits(emb)
    assert (probs.argmax(1) != 1).all()


def test_pool_endpoints_are_the_parts():
    llm = np.array([[0.7, 0.3]])
    head = np.array([[0.2, 0.8]])
    np.testing.assert_allclose(pool(llm, head, 1.0), llm, atol=1e-6)
    np.testing.assert_allclose(pool(llm, head, 0.0), head, atol=1e-6)


def test_head_weights_round_trip_as_plain_json_numbers():
    head = HeadWeights(((0.1, -0.2), (0.3, 0.4)), (0.0, -1.0), 0.25)
    recipe = ControlRecipe(head=head)
    again = ControlRecipe.from_dict(recipe.to_dict())
    assert again.head == head


def test_pooled_head_is_not_worse_than_the_better_part_on_held_out_data():
    """Deterministic fixture: the LLM knows labels 0/1 apart, the embeddings know 1/2 apart."""
    rng = np.random.default_rng(7)
    n = 300
    gold = rng.integers(0, 3, n)
    llm_logits = np.stack([(gold == 0) * 2.0, (gold != 0) * 2.0, (gold != 0) * 2.0], axis=1) + rng.normal(0, 0.8, (n, 3))
    llm_probs = np.exp(llm_logits) / np.exp(llm_logits).sum(1, keepdims=True)
    emb = np.stack([(gold == 2) * 1.0, (gold != 2) * 1.0], axis=1) + rng.normal(0, 0.35, (n, 2))
    llm = CandidateResult("llm", ControlRecipe(), llm_probs, gold)
    head, pooled, mixed = evaluate_head(llm, emb, fold_ids(n, 5))
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
    balanced, pooled, mixed = evaluate_head(llm, emb, fold_ids(30, 5), balanced=True)
    assert (balanced.name, pooled.name, mixed.name) == ("head-balanced", "llm+head-balanced", "llm+head-balanced-mix")
    assert balanced.probs.argmax(1).sum() > plain.probs.argmax(1).sum()  # it does say "rare"
    assert balanced.metrics["macro_f1"] > plain.metrics["macro_f1"]
    assert balanced.recipe.head.balanced and not plain.recipe.head.balanced
    again = ControlRecipe.from_dict(balanced.recipe.to_dict())  # stored with the version, refit the same way
    assert again.head.balanced and again.to_dict() == balanced.recipe.to_dict()


def test_labels_the_head_never_saw_get_the_good_turing_missing_mass():
    """With most of many labels unseen (intents), a head that gives them ~0 is overconfident and,
    pooled, vetoes the LLM on them; the missing mass keeps both honest."""
    gold = np.array([0, 0, 1, 2, 3])  # labels 1, 2, 3 seen once: 3 of 5 items; labels 4..9 absent
    assert unseen_label_mass(gold, 10) == pytest.approx(0.6)
    assert unseen_label_mass(np.array([0, 1, 1, 2]), 3) == 0.0  # every label seen
    assert unseen_label_mass(np.arange(5), 6) == pytest.approx(1 / 6)  # capped at the uniform share
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(5, 4))
    coef, intercept = train_head(emb, gold, 10)
    head = HeadWeights(tuple(map(tuple, coef)), tuple(intercept), 0.0, unseen_mass=unseen_label_mass(gold, 10))
    probs = head.head_probs(rng.normal(size=(3, 4)))
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(probs[:, 4:], 0.1)  # 0.6 over the 6 absent labels
    stored = ControlRecipe(head=head).to_dict()
    assert ControlRecipe.from_dict(stored).head.unseen_mass == pytest.approx(0.6)
    assert ControlRecipe.from_dict(stored).to_dict() == stored
    llm = np.full((3, 10), 0.01)
    llm[:, 7] = 0.91  # the LLM is sure of a label the head never saw
    assert (replace(head, weight_llm=0.5).combine(llm, rng.normal(size=(3, 4))).argmax(1) == 7).all()
    assert (replace(head, weight_llm=0.5, unseen_mass=0.0).combine(llm, rng.normal(size=(3, 4))).argmax(1) != 7).all()


def test_a_mixture_pool_serves_what_it_was_fitted_as():
    """The stored recipe sharpens the head by its own temperature, mixes, then applies the pool's
    temperature; the same numbers come back from JSON."""
    rng = np.random.default_rng(5)
    coef, intercept = rng.normal(size=(3, 4)), rng.normal(size=3)
    head = HeadWeights(tuple(map(tuple, coef)), tuple(intercept), 0.3, temperature=0.8, pooling="mix",
                       head_temperature=0.5)
    emb, llm = rng.normal(size=(6, 4)), rng.dirichlet(np.ones(3), 6)
    head_part = head.head_probs(emb) ** 2  # temperature 0.5
    head_part /= head_part.sum(1, keepdims=True)
    expected = (0.3 * llm + 0.7 * head_part) ** 1.25  # temperature 0.8
    np.testing.assert_allclose(head.combine(llm, emb), expected / expected.sum(1, keepdims=True), atol=1e-9)
    stored = ControlRecipe(head=head).to_dict()
    again = ControlRecipe.from_dict(stored).head
    assert (again.pooling, again.head_temperature) == ("mix", 0.5) and ControlRecipe(head=again).to_dict() == stored
    assert "pooling" not in ControlRecipe(head=replace(head, pooling="log")).to_dict()["head"]



def test_a_stored_head_with_an_unknown_pooling_is_refused_by_name():
    stored = ControlRecipe(head=HeadWeights(((0.1,),), (0.0,), 0.5)).to_dict()
    stored["head"]["pooling"] = "max"
    with pytest.raises(ValueError, match="head.pooling"):
        ControlRecipe.from_dict(stored)
