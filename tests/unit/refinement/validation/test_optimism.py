"""The selection optimism of a family of cross-validated candidates (pure logic on scripted answers)."""
import numpy as np

from backend.labeling.recipe import ControlRecipe
from backend.refinement.validation.control_kind import MULTIPLE
from backend.refinement.validation.crossval import CandidateResult
from backend.refinement.validation.optimism import chosen_out_of_bag, selection_optimism


def _result(name, gold, pred, n_labels=2):
    probs = np.full((len(gold), n_labels), 0.1)
    probs[np.arange(len(gold)), pred] = 0.9
    return CandidateResult(name, ControlRecipe(), probs / probs.sum(1, keepdims=True), gold)


def test_the_best_of_many_coin_flips_looks_better_than_chance_until_its_optimism_is_taken_off():
    corrected = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        gold = rng.integers(0, 2, 200)
        family = [_result(f"coin{i}", gold, rng.integers(0, 2, 200)) for i in range(30)]
        best = max(r.metrics["macro_f1"] for r in family)
        optimism = selection_optimism(family)
        assert best > 0.54 and optimism > 0.04, seed
        corrected.append(best - optimism)
    assert abs(np.mean(corrected) - 0.5) < 0.02  # what a coin is worth on new items


def test_one_candidate_or_one_clearly_best_has_little_optimism():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 200)
    good = np.where(rng.random(200) < 0.85, gold, (gold + 1) % 3)
    assert abs(selection_optimism([_result("good", gold, good, 3)])) < 0.01
    family = [_result("good", gold, good, 3)] + [_result(f"coin{i}", gold, rng.integers(0, 3, 200), 3)
                                                 for i in range(20)]
    assert abs(selection_optimism(family)) < 0.01
    assert chosen_out_of_bag([family[0]]) == chosen_out_of_bag(family)  # chosen on every sample


def test_multiple_choice_families_are_read_by_micro_f1_of_their_served_sets():
    rng = np.random.default_rng(1)
    gold = (rng.random((120, 4)) < 0.3).astype(np.int8)
    family = [CandidateResult(f"c{i}", ControlRecipe(), rng.random((120, 4)), gold, kind=MULTIPLE) for i in range(10)]
    best = max(r.metrics["micro_f1"] for r in family)
    assert 0 < selection_optimism(family) < best
