"""The embedding head as served: pooling with the LLM, the mass of labels it never saw,
serialisation."""
import json
from dataclasses import replace

import numpy as np
import pytest

from backend.labeling.calibration import sigmoid
from backend.labeling.head import HeadWeights, pool, unseen_label_mass
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.embedding_head import train_head


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


def test_one_vs_rest_weights_round_trip_and_endpoints_are_the_parts():
    head = HeadWeights(((1.0, 0.0), (0.0, -1.0)), (0.0, -20.0), 1.0, one_vs_rest=True)
    again = HeadWeights.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again == head and head.to_dict()["one_vs_rest"] is True
    llm = np.array([[0.7, 0.2]])
    emb = np.array([[2.0, 0.5]])
    np.testing.assert_allclose(head.combine(llm, emb), llm, atol=1e-6)
    np.testing.assert_allclose(HeadWeights(head.coef, head.intercept, 0.0, one_vs_rest=True).combine(llm, emb),
                               sigmoid(emb @ np.array(head.coef).T + head.intercept), atol=1e-6)
    assert "one_vs_rest" not in HeadWeights(((1.0,),), (0.0,), 0.5).to_dict()  # single-choice JSON unchanged


def _state_head(weight=1.0):
    mean = (1.0, 1.0, 1.0)
    coef = ((0.0, 0.0, 4.0, 0.0, 0.0), (0.0, 0.0, -4.0, 0.0, 0.0))  # reads the state's first number only
    return HeadWeights(coef, (0.0, 0.0), 0.0, state_weight=weight, state_mean=mean)


def test_a_head_that_reads_the_state_at_the_answer_centres_it_and_needs_it():
    head = _state_head(2.0)
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0]])
    states = np.array([[4.0, 1.0, 1.0], [-2.0, 1.0, 1.0]])  # centred: (+3, 0, 0) and (-3, 0, 0)
    features = head.features(embeddings, states)
    np.testing.assert_allclose(features, [[1.0, 0.0, 2.0, 0.0, 0.0], [0.0, 1.0, -2.0, 0.0, 0.0]])
    probs = head.combine(np.full((2, 2), 0.5), embeddings, states)
    assert probs[0, 0] > 0.99 and probs[1, 1] > 0.99
    assert head.reads_llm and head.reads_state  # the state comes from the LLM's pass
    with pytest.raises(ValueError, match="state at the answer"):
        head.combine(np.full((2, 2), 0.5), embeddings)
    assert not HeadWeights(((0.0,),), (0.0,), 0.0).reads_llm


def test_a_state_head_round_trips_and_a_broken_stored_one_is_refused_by_field():
    head = _state_head()
    stored = json.loads(json.dumps(head.to_dict()))
    assert HeadWeights.from_dict(stored) == head
    assert "state_weight" not in HeadWeights(((0.0,),), (0.0,), 0.0).to_dict()
    for broken, field in (({"state_mean": None}, "head.state_mean"), ({"state_weight": -1}, "head.state_weight"),
                          ({"state_mean": [0.0] * 5}, "head.coef")):
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            HeadWeights.from_dict({**stored, **broken})
