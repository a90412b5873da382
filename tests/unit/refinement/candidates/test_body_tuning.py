"""SetFit-style pair generation and learning-rate schedule (pure parts of the body fine-tuning)."""
from collections import Counter

import numpy as np

from backend.refinement.candidates.body_tuning import contrastive_pairs, warmup_then_linear_decay

GOLD = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])


def test_every_pair_has_the_target_of_its_labels_and_no_item_meets_itself():
    pairs = contrastive_pairs(GOLD, iterations=5, seed=3)
    assert pairs
    for p in pairs:
        assert p.first != p.second
        assert p.target == (1.0 if GOLD[p.first] == GOLD[p.second] else 0.0)


def test_positives_and_negatives_are_balanced_and_every_item_leads_two_pairs_per_iteration():
    pairs = contrastive_pairs(GOLD, iterations=20, seed=0)
    targets = Counter(p.target for p in pairs)
    assert targets[1.0] == targets[0.0] == 20 * len(GOLD)
    leads = Counter((p.first, p.target) for p in pairs)
    assert set(leads.values()) == {20}  # each item: 20 positive and 20 negative pairs
    assert len(leads) == 2 * len(GOLD)


def test_pairs_are_deterministic_for_a_seed_and_shuffled():
    assert contrastive_pairs(GOLD, 4, seed=1) == contrastive_pairs(GOLD, 4, seed=1)
    assert contrastive_pairs(GOLD, 4, seed=1) != contrastive_pairs(GOLD, 4, seed=2)
    firsts = [p.first for p in contrastive_pairs(GOLD, 4, seed=1)]
    assert firsts != sorted(firsts)  # not grouped item by item: a batch mixes items and targets


def test_an_item_alone_in_its_label_gets_negatives_only_and_one_label_gives_no_negatives():
    pairs = contrastive_pairs(np.array([0, 0, 0, 1]), iterations=3, seed=0)
    assert not [p for p in pairs if p.first == 3 and p.target == 1.0]
    assert len([p for p in pairs if p.first == 3 and p.target == 0.0]) == 3
    assert {p.target for p in contrastive_pairs(np.array([1, 1, 1]), iterations=3)} == {1.0}


def test_max_pairs_caps_the_number_of_pairs():
    assert len(contrastive_pairs(GOLD, 20, seed=0, max_pairs=50)) == 50
    assert contrastive_pairs(GOLD, 20, seed=0, max_pairs=50) == contrastive_pairs(GOLD, 20, seed=0)[:50]


def test_learning_rate_warms_up_then_decays_to_zero():
    factor = warmup_then_linear_decay(100, 0.1)
    rates = [factor(s) for s in range(100)]
    assert rates[0] == 0.1 and rates[9] == 1.0
    assert all(a <= b for a, b in zip(rates[:10], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert 0 < rates[-1] <= 0.02


def test_the_pairs_are_capped_and_balanced():
    pairs = contrastive_pairs(np.array([0] * 6 + [1] * 6), iterations=5, max_pairs=40)
    assert len(pairs) == 40 and 10 < sum(p.target for p in pairs) < 30
    assert all(((p.first < 6) == (p.second < 6)) == (p.target == 1.0) and p.first != p.second for p in pairs)
