"""The fine-tuned top layers of the real bundled MiniLM: computed from cached lower-layer states
exactly as the whole model computes them, trained so that texts of a label move together, stored
as a few tensors and rebuilt by any process into the same embeddings."""
import numpy as np
import pytest

from backend.errors import TunedBodyMissing
from backend.labeling.head import Embedder, HeadWeights, load_minilm
from backend.labeling.service import LabelingService
from backend.labeling.tuned_body import TunedBody, body_loader, encoder_layers, is_tuned, tuned_embedder
from backend.refinement.candidates.body_tuning import LowerStates, tune_top
from backend.engines.scripted import ScriptedEngine
from backend.store.tuned_bodies import TunedBodies
from tests.model.satisfaction import GOLD, TEXTS, same_minus_different_cosine

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm():
    import torch

    torch.set_num_threads(1)
    return load_minilm()


@pytest.fixture(scope="module")
def tuned(minilm):
    """The top 2 layers tuned on all twelve texts (10 pair iterations)."""
    lower = LowerStates(minilm, TEXTS, 2)
    return lower, tune_top(lower, np.arange(len(TEXTS)), GOLD, iterations=10)


@pytest.mark.parametrize("top", [1, 3, 6])
def test_cached_lower_states_through_the_frozen_top_layers_give_the_models_own_embeddings(minilm, top):
    lower = LowerStates(minilm, TEXTS, top)
    layers = list(encoder_layers(minilm))[-top:]
    own = lower.encode(layers, range(len(TEXTS)))
    np.testing.assert_allclose(own, Embedder(minilm).encode(TEXTS), atol=1e-5)
    reordered = np.random.default_rng(0).permutation(len(TEXTS))  # run in groups of similar length
    np.testing.assert_allclose(lower.encode(layers, reordered), own[reordered], atol=1e-5)


def test_tuning_the_top_layers_pulls_same_label_texts_together_and_leaves_the_model_alone(minilm, tuned):
    lower, layers = tuned
    frozen = Embedder(minilm).encode(TEXTS)
    after = lower.encode(layers, range(len(TEXTS)))
    before, margin = same_minus_different_cosine(frozen), same_minus_different_cosine(after)
    assert margin > before + 0.05, (before, margin)
    np.testing.assert_allclose(Embedder(minilm).encode(TEXTS), frozen, atol=1e-6)  # a copy was trained


def test_a_stored_body_is_rebuilt_into_the_same_embeddings_by_another_service(minilm, tuned, redis_conn):
    lower, layers = tuned
    body = TunedBody.of(layers)
    assert is_tuned(body.name) and body.top == 2 and len(body.tensors) < 20_000_000
    assert TunedBody.of(layers).name == body.name  # content-addressed
    store = TunedBodies(redis_conn)
    store.save(body.name, body.top, body.tensors)
    service = LabelingService(ScriptedEngine(), embedder=Embedder(minilm), bodies=body_loader(store.load))
    head = HeadWeights(((0.0,) * 384, (0.0,) * 384), (0.0, 0.0), weight_llm=0.0, embedder=body.name)
    served = service.head_embeddings(head, TEXTS)
    np.testing.assert_allclose(served, lower.encode(layers, range(len(TEXTS))), atol=1e-5)
    np.testing.assert_allclose(tuned_embedder(minilm, TunedBody(2, body.tensors)).encode(TEXTS), served, atol=1e-6)
    assert service.tuned_embedder(body.name) is service.tuned_embedder(body.name)  # loaded once


def test_a_version_whose_body_is_not_stored_gets_a_named_error(minilm, redis_conn):
    service = LabelingService(ScriptedEngine(), embedder=Embedder(minilm), bodies=body_loader(TunedBodies(redis_conn).load))
    head = HeadWeights(((0.0,),), (0.0,), weight_llm=0.0, embedder="tuned:0000000000")
    with pytest.raises(TunedBodyMissing, match="tuned:0000000000"):
        service.head_embeddings(head, TEXTS)

