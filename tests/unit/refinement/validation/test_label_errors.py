import numpy as np

from backend.refinement.validation.label_errors import (class_thresholds, label_issues, multi_label_issues,
                                                         single_label_issues)


def noisy_labels(n: int, k: int, flip: float, seed: int):
    """Probabilities of a decent model of the true labels, and human labels with `flip` of them
    changed to another label at random."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1.0, (n, k)) + 2.0 * np.eye(k)[true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, int(flip * n), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, len(flipped))) % k
    return probs, given, true, set(flipped.tolist())


def test_flipped_labels_rank_first():
    probs, given, true, flipped = noisy_labels(1000, 3, 0.1, seed=1)
    issues = single_label_issues(probs, given)
    top = {s.position for s in issues[:len(flipped)]}
    assert len(top & flipped) / len(flipped) > 0.6  # precision at the number flipped
    for s in issues[:20]:
        assert s.given == (given[s.position],) and s.suggested != s.given
        assert s.p_suggested > s.p_given
    confident = [s for s in issues if s.confident]
    assert issues[:len(confident)] == confident  # confident suspects first, each group by p_given
    for group in (confident, issues[len(confident):]):
        assert [s.p_given for s in group] == sorted(s.p_given for s in group)


def test_clean_labels_from_a_sure_model_give_no_suspect():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8], [0.85, 0.1, 0.05]])
    assert single_label_issues(probs, np.array([0, 1, 2, 0])) == []


def test_each_label_is_judged_against_its_own_typical_confidence():
    # The model under-scores label 1 everywhere: 0.35 is typical for it, so an item labelled 0
    # with P(1) = 0.45 > its threshold and > P(0) is a suspect, although label 0 is still 0.5
    probs = np.array([[0.7, 0.3], [0.75, 0.25], [0.55, 0.45], [0.65, 0.35], [0.62, 0.38]])
    gold = np.array([0, 0, 0, 1, 1])
    assert np.allclose(class_thresholds(probs, gold), [0.6667, 0.365], atol=1e-3)
    # item 3, labelled 1 with P(1) = 0.35, is typical of label 1: the model leans to 0 but is not
    # confident of it, so it comes after item 2
    confident, leaning = single_label_issues(probs, gold)
    assert (confident.position, confident.given, confident.suggested, confident.confident) == (2, (0,), (1,), True)
    assert confident.p_given == 0.55
    assert (leaning.position, leaning.suggested, leaning.confident) == (3, (0,), False)
    # a label nobody gave is never suggested: nothing says what is typical for it
    (issue,) = single_label_issues(np.array([[0.2, 0.8], [0.3, 0.7]]), np.array([0, 0]))
    assert issue.position == 0 and not issue.confident


def test_multi_label_flags_the_answers_that_are_confidently_the_other_one():
    rng = np.random.default_rng(2)
    n, k = 400, 4
    true = rng.random((n, k)) < 0.3
    probs = np.clip(np.where(true, 0.75, 0.15) + rng.normal(0, 0.1, (n, k)), 0.01, 0.99)
    given = true.copy()
    flipped = rng.choice(n, 30, replace=False)
    given[flipped, rng.integers(0, k, 30)] ^= True
    issues = multi_label_issues(probs, given.astype(np.int8))
    flagged, wrong = {s.position for s in issues if s.confident}, set(flipped.tolist())
    # a flipped answer is flagged when the model is at least as sure of the other answer as it
    # typically is (about half of them here); a right answer far from that is never flagged
    assert len(flagged & wrong) / len(flagged) > 0.9 and len(flagged & wrong) / len(wrong) > 0.4
    for s in issues[:10]:
        assert set(s.given) == set(np.flatnonzero(given[s.position]))
        assert set(s.suggested) ^ set(s.given)  # at least one answer changes
    assert label_issues(probs, given.astype(np.int8), multiple=True) == issues
    # with the decision threshold the model serves, the answers it is not confident of follow it
    low = multi_label_issues(probs, given.astype(np.int8), threshold=np.full(n, 0.01))
    assert len(low) > len(issues) and any(not s.confident and set(s.suggested) > set(s.given) for s in low)


def test_nothing_to_rank():
    assert single_label_issues(np.zeros((0, 3)), np.zeros(0, dtype=int)) == []
    assert multi_label_issues(np.zeros((0, 3)), np.zeros((0, 3), dtype=int)) == []
