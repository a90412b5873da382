"""The embedded engine's answer state: the final hidden state where the label is read, with the
label scores unchanged."""
import numpy as np
import pytest

from backend.engines.base import Branch

pytestmark = pytest.mark.model

PREFIX = "Classify the text into one of these labels: positive, negative.\n\n"
ITEMS = ("Text: a wonderful film\nLabel:", "Text: dull and boring, I left early\nLabel:")
BRANCHES = (Branch(suffix="", continuations=(" positive", " negative")),)


def test_the_answer_state_is_llama_cpps_last_token_state_and_leaves_the_scores_alone(engine, settings):
    import llama_cpp

    from backend.engines.factory import prepare_model

    assert engine.capabilities.answer_state and engine.capabilities.state_blocks == 2
    width = engine.capabilities.state_size // 2
    scores = [engine.score(PREFIX, item, BRANCHES)[0] for item in ITEMS]
    with_state = [engine.score_with_state(PREFIX, item, BRANCHES) for item in ITEMS]
    reference = llama_cpp.Llama(model_path=str(prepare_model(settings)), embedding=True, n_ctx=512, n_batch=512,
                                n_ubatch=512, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, verbose=False)
    try:
        for item, plain, (scored, states) in zip(ITEMS, scores, with_state):
            assert np.array_equal(scored[0], plain)
            last = np.asarray(reference.embed(PREFIX + item, normalize=False))
            assert len(states) == 1 and states[0].shape == (2 * last.shape[0],)
            # the last token is evaluated alone (other kernels than in a whole batch): close, not equal
            assert cosine(states[0][:width], last) > 0.995
        assert not np.allclose(with_state[0][1][0], with_state[1][1][0])  # each text its own state
    finally:
        reference.close()


def test_the_second_block_is_the_tapped_layers_output_at_the_last_token(engine, settings):
    """Checked against the same layer read from a whole-prompt decode in a context of its own."""
    import llama_cpp
    from llama_cpp import _internals

    from backend.engines.factory import prepare_model
    from backend.engines.layer_tap import LayerTap, tap_layer

    width = engine.capabilities.state_size // 2
    reference = llama_cpp.Llama(model_path=str(prepare_model(settings)), n_ctx=512, n_batch=512, verbose=False)
    layer = tap_layer(llama_cpp.llama_model_n_layer(reference._model.model))
    assert 0 < layer < llama_cpp.llama_model_n_layer(reference._model.model) - 1  # an inner layer
    tap = LayerTap(layer, width)
    params = reference.context_params
    tap.install(params)
    context = _internals.LlamaContext(model=reference._model, params=params, verbose=False)
    reference._ctx.close()
    reference._ctx = context
    try:
        for item in ITEMS:
            (_, (state,)) = engine.score_with_state(PREFIX, item, BRANCHES)
            inner = state[width:]
            tokens = reference.tokenize(PREFIX.encode(), add_bos=True) + reference.tokenize(item.encode(), add_bos=False)
            reference.reset()
            with tap.capture() as whole:
                reference.eval(tokens)
            assert cosine(inner, whole[0]) > 0.99
            # the residual stream inside the network: far from the final, normalised state
            assert np.linalg.norm(inner) > 10 * np.linalg.norm(state[:width])
    finally:
        reference.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
