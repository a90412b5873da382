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

    assert engine.capabilities.answer_state
    scores = [engine.score(PREFIX, item, BRANCHES)[0] for item in ITEMS]
    with_state = [engine.score_with_state(PREFIX, item, BRANCHES) for item in ITEMS]
    reference = llama_cpp.Llama(model_path=str(prepare_model(settings)), embedding=True, n_ctx=512, n_batch=512,
                                n_ubatch=512, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, verbose=False)
    try:
        for item, plain, (scored, states) in zip(ITEMS, scores, with_state):
            assert np.array_equal(scored[0], plain)
            last = np.asarray(reference.embed(PREFIX + item, normalize=False))
            assert len(states) == 1 and states[0].shape == last.shape
            # the last token is evaluated alone (other kernels than in a whole batch): close, not equal
            cosine = states[0] @ last / (np.linalg.norm(states[0]) * np.linalg.norm(last))
            assert cosine > 0.995
        assert not np.allclose(with_state[0][1][0], with_state[1][1][0])  # each text its own state
    finally:
        reference.close()
