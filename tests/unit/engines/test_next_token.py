"""Answers read from next-token log-probabilities (OpenAI-compatible servers): top-k log-probs,
the ceiling of an unlisted answer, votes."""
import math

import numpy as np
import pytest

from backend.engines.next_token import allowed_logprobs, unlisted_ceiling, vote_logprobs


def test_listed_answers_keep_their_log_probs_and_variants_are_summed():
    top = {" A": -1.0, "A": -3.0, " B": -2.0, "\n": -0.5}
    got = allowed_logprobs(top, [" A", " B"], k=4)
    assert got[0] == pytest.approx(np.logaddexp(-1.0, -3.0))
    assert got[1] == pytest.approx(-2.0)


def test_an_unlisted_answer_gets_the_most_it_could_have_had():
    top = {"x": math.log(0.5), "y": math.log(0.3), "z": math.log(0.15)}
    # below the 3rd listed token (0.15) and within the 0.05 left over: log(0.05)
    assert unlisted_ceiling(top, k=3) == pytest.approx(math.log(0.05))
    top = {"x": math.log(0.2), "y": math.log(0.1)}  # 0.7 left over, but it ranks below 0.1
    assert unlisted_ceiling(top, k=2) == pytest.approx(math.log(0.1))


def test_an_appended_sampled_token_does_not_lower_the_ceiling():
    """llama.cpp lists k entries plus the sampled token; the ceiling uses the k-th largest."""
    top = {"a": math.log(0.4), "b": math.log(0.2), "forced": -19.0}
    assert unlisted_ceiling(top, k=2) == pytest.approx(math.log(0.2))


def test_no_allowed_answer_listed_gives_equal_scores_hence_a_uniform_distribution():
    got = allowed_logprobs({"x": -0.1, "y": -3.0}, [" A", " B", " C"], k=2)
    assert len(set(got)) == 1


def test_votes_are_smoothed_and_invalid_answers_dropped():
    got = np.exp(vote_logprobs([" A", "A", "B", None, "maybe"], [" A", " B"]))
    assert got == pytest.approx([2.5 / 4, 1.5 / 4])
    with pytest.raises(ValueError):
        vote_logprobs([None, "x"], [" A", " B"])
