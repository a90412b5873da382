"""The significance tests of the selection rule: exact McNemar, paired bootstraps, Holm's correction."""
import numpy as np
import pytest

from backend.metrics.multi_label import macro_f1, micro_f1
from backend.refinement.validation.significance import (macro_f1_counts, mcnemar_exact, paired_bootstrap_macro_f1,
                                                        paired_bootstrap_multilabel_f1)


def test_mcnemar_exact_values():
    cand = np.array([1] * 10 + [0] * 0 + [1] * 5, dtype=bool)
    cur = np.array([0] * 10 + [1] * 5, dtype=bool)
    b, c, p = mcnemar_exact(cand, cur)
    assert (b, c) == (10, 0)
    assert p == pytest.approx(2 / 2**10)
    assert mcnemar_exact(cur, cur)[2] == 1.0


def test_bootstrap_is_significant_only_for_a_real_gain():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 200)
    good = np.where(rng.random(200) < 0.9, gold, 1 - gold)
    bad = np.where(rng.random(200) < 0.6, gold, 1 - gold)
    gain, p = paired_bootstrap_macro_f1(gold, good, bad, 2)
    assert gain > 0.2 and p < 0.01
    gain, p = paired_bootstrap_macro_f1(gold, bad, good, 2)
    assert gain < 0 and p > 0.99


def test_bootstrap_counts_every_resample_as_macro_f1_does():
    """The resamples are counted all at once; each must score as macro_f1_counts scores it,
    labels missing from a resample (neither gold nor predicted) left out of its mean."""
    rng = np.random.default_rng(3)
    gold = np.r_[rng.integers(0, 4, 39), 4]  # label 4: one item, absent from a third of the resamples
    cand = np.where(rng.random(40) < 0.7, gold, rng.integers(0, 4, 40))
    cur = cand.copy()
    cur[:3] = (gold[:3] + 1) % 4  # wrong where the candidate may be right: resamples without them tie
    cand[0] = 4  # label 4 predicted by one system only
    draws = np.random.default_rng(0).integers(0, 40, (300, 40))
    diffs = np.array([macro_f1_counts(gold[i], cand[i], 5) - macro_f1_counts(gold[i], cur[i], 5) for i in draws])
    gain, p = paired_bootstrap_macro_f1(gold, cand, cur, 5, n_boot=300)
    assert gain == pytest.approx(macro_f1_counts(gold, cand, 5) - macro_f1_counts(gold, cur, 5))
    assert p == pytest.approx(((diffs <= 0).sum() + 1) / 301)
    assert 0 < (diffs == 0).sum() < 300  # ties count as "not better"


def test_holm_rejects_in_order_and_stops_at_the_first_failure():
    from backend.refinement.validation.significance import holm_rejections

    assert holm_rejections([0.01, 0.04, 0.03, 0.5], 0.05) == [True, False, False, False]  # 0.03 ≥ 0.05/3
    assert holm_rejections([0.001, 0.015, 0.02], 0.05) == [True, True, True]  # 0.015 < 0.025, 0.02 < 0.05
    assert holm_rejections([], 0.05) == []


def test_multilabel_bootstrap_is_significant_only_for_a_real_gain():
    rng = np.random.default_rng(1)
    gold = (rng.random((200, 4)) < 0.3).astype(int)
    good = np.where(rng.random(gold.shape) < 0.95, gold, 1 - gold)
    bad = np.where(rng.random(gold.shape) < 0.7, gold, 1 - gold)
    gain, p = paired_bootstrap_multilabel_f1(gold, good, bad)
    assert gain == pytest.approx(macro_f1(gold, good) - macro_f1(gold, bad))
    assert gain > 0.2 and p < 0.01
    gain, p = paired_bootstrap_multilabel_f1(gold, bad, good)
    assert gain < 0 and p > 0.99
    gain, p = paired_bootstrap_multilabel_f1(gold, good, bad, average="micro")
    assert gain == pytest.approx(micro_f1(gold, good) - micro_f1(gold, bad)) and p < 0.01


def test_multilabel_bootstrap_judges_both_systems_on_each_resample_of_items():
    rng = np.random.default_rng(4)
    gold = (rng.random((30, 3)) < 0.4).astype(int)
    cand = np.where(rng.random(gold.shape) < 0.8, gold, 1 - gold)
    cur = np.where(rng.random(gold.shape) < 0.75, gold, 1 - gold)
    draws = np.random.default_rng(0).integers(0, 30, (200, 30))
    diffs = np.array([macro_f1(gold[i], cand[i]) - macro_f1(gold[i], cur[i]) for i in draws])
    _, p = paired_bootstrap_multilabel_f1(gold, cand, cur, n_boot=200)
    assert p == pytest.approx(((diffs <= 1e-12).sum() + 1) / 201)
    assert 0 < (diffs <= 0).sum() < 200


def test_span_f1_bootstrap_rewards_the_system_that_finds_more_and_is_paired():
    from backend.refinement.validation.significance import paired_bootstrap_span_f1

    current = np.array([[0, 1, 1]] * 20 + [[1, 1, 1]] * 5)  # (true positives, predicted, gold) per text
    better = np.array([[1, 1, 1]] * 20 + [[1, 1, 1]] * 5)
    diff, p = paired_bootstrap_span_f1(better, current)
    assert diff == pytest.approx(1.0 - 0.2) and p < 0.01
    same_diff, same_p = paired_bootstrap_span_f1(current, current)
    assert same_diff == 0.0 and same_p == 1.0  # never better than itself
    worse_diff, worse_p = paired_bootstrap_span_f1(current, better)
    assert worse_diff < 0 and worse_p > 0.99
