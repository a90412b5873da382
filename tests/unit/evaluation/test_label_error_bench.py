"""The robust-head measurement of suspects-bench, on synthetic embeddings (no model)."""
import numpy as np

from backend.evaluation.label_error_bench import flip_labels, robust_head_rows


def blobs(seed: int, n: int, d: int = 40):
    rng = np.random.default_rng(seed)
    gold = np.arange(n) % 2
    emb = rng.normal(size=(n, d))
    emb[:, 0] += np.where(gold == 1, 2.0, -2.0)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), gold


def test_flip_labels_changes_the_share_asked_for_to_other_labels():
    gold = np.arange(200) % 3
    noisy, where = flip_labels(gold, 3, 0.1, np.random.default_rng(0))
    assert len(where) == 20 and (noisy[where] != gold[where]).all()
    assert (noisy == gold).sum() == 180 and len(flip_labels(gold, 3, 0.0, np.random.default_rng(0))[1]) == 0


def test_robust_head_rows_one_run_per_share_and_seed_with_the_flips_among_the_down_weighted():
    emb, gold = blobs(0, 150)
    test_emb, test_gold = blobs(1, 200)
    runs = robust_head_rows(emb, gold, test_emb, test_gold, 2, [0.0, 0.15], [0, 1])
    assert [(r.share, r.seed) for r in runs] == [(0.0, 0), (0.0, 1), (0.15, 0), (0.15, 1)]
    clean, noisy = runs[0], runs[2:]
    assert clean.flipped == 0 and clean.flipped_among_down_weighted == 0.0
    assert all(r.flipped == 22 and r.flipped_among_down_weighted > 0.5 for r in noisy)  # 0.15 at random
    assert all(0 <= r.head_robust <= 1 and 0 <= r.head_random <= 1 and 0 <= r.cv_head_robust <= 1 for r in runs)
    assert np.mean([r.head_robust for r in noisy]) >= np.mean([r.head for r in noisy])
