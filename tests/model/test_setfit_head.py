"""SetFit-style fine-tuning of the real bundled MiniLM on a dozen texts (one epoch, one thread):
the body changes, and texts of a label move closer together than texts of different labels."""
import numpy as np
import pytest

from backend.evaluation.setfit_head import fine_tune, train_setfit_head
from backend.labeling.head import Embedder, load_minilm
from tests.model.satisfaction import GOLD, TEXTS, same_minus_different_cosine

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm():
    import torch

    torch.set_num_threads(1)
    return load_minilm()


def test_fine_tuning_pulls_same_label_texts_together_and_leaves_the_frozen_model_alone(minilm):
    frozen_before = Embedder(minilm).encode(TEXTS)
    tuned = fine_tune(minilm, TEXTS, GOLD, iterations=10, seed=0)
    tuned_emb = Embedder(tuned).encode(TEXTS)
    assert not np.allclose(tuned_emb, frozen_before, atol=1e-3)
    np.testing.assert_allclose(Embedder(minilm).encode(TEXTS), frozen_before, atol=1e-6)  # a copy was trained
    margin_before, margin_after = same_minus_different_cosine(frozen_before), same_minus_different_cosine(tuned_emb)
    assert margin_after > margin_before + 0.05, (margin_before, margin_after)


def test_setfit_head_classifies_its_training_texts(minilm):
    head = train_setfit_head(minilm, TEXTS, GOLD, 2, iterations=5, seed=0)
    logits = head.embedder.encode(TEXTS) @ head.coef.T + head.intercept
    assert head.pairs == 2 * 5 * len(TEXTS)
    assert (logits.argmax(1) == GOLD).all()


def _head_bench(dataset: str, *args: str, timeout: int = 300):
    """`python -m backend head-bench` on a shared data set's train and test splits."""
    import os
    import subprocess
    import sys

    from tests.conftest import DATASETS, ROOT

    sets = DATASETS / dataset
    return subprocess.run(
        [sys.executable, "-m", "backend", "head-bench", "--dataset", str(sets / "train.jsonl"), "--test",
         str(sets / "test.jsonl"), *args],
        env=dict(os.environ, LOG_LEVEL="WARNING"), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_head_bench_command_writes_its_table_and_json(tmp_path):
    """The benchmark itself, shrunk to 8 labels, 10 test items and one pair iteration."""
    import json

    out = tmp_path / "bench.json"
    done = _head_bench("subjectivity", "--labels", "8", "--limit-test", "10", "--iterations", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| subjectivity | 8 |" in done.stdout
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert report["torch_threads"] == 1 and row["labels"] == 8 and row["setfit"]["pairs"] == 16
    assert 0 <= row["frozen"]["macro_f1"] <= 1 and row["setfit"]["fit_seconds"] > row["frozen"]["fit_seconds"]


def test_head_bench_fine_tunes_only_the_top_layers_as_a_job_does(tmp_path):
    import json

    out = tmp_path / "top.json"
    done = _head_bench("subjectivity", "--labels", "8", "--limit-test", "10", "--iterations", "1", "--top-layers", "2",
                       "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert report["top_layers"] == 2 and row["setfit"]["pairs"] == 16 and 0 <= row["setfit"]["macro_f1"] <= 1
    assert "| subjectivity | 8 |" in done.stdout


def test_head_bench_without_setfit_shows_the_shipped_head_with_missing_mass_on_many_labels(tmp_path):
    """clinc150 with 20 labels: most of its 151 intents unseen, so the shipped head carries missing
    mass, and its table row shows raw and shipped ECE each beside its floor."""
    import json

    out = tmp_path / "shipped.json"
    done = _head_bench("clinc150", "--no-setfit", "--labels", "20", "--limit-test", "40", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| clinc150 | 20 | head |" in done.stdout and "| clinc150 | 20 | head-balanced |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["head"] for r in rows] == ["head", "head-balanced"]
    for row in rows:
        assert row["labels_seen"] < 151 and 0 < row["unseen_mass"] <= 1
        assert 0 <= row["shipped"]["ece_floor"] <= 1 and 0 <= row["raw"]["ece"] <= 1


def test_head_bench_without_setfit_takes_a_multi_label_set(tmp_path):
    import json

    out = tmp_path / "multi.json"
    done = _head_bench("goemotions", "--no-setfit", "--labels", "30", "--limit-test", "40", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["head"] == "one-vs-rest" and row["labels_seen"] < 28
    assert f"| goemotions | 30 | {row['labels_seen']} |" in done.stdout and "micro-F1 at 0.5" in done.stdout
    assert {"micro_f1", "ece", "log_loss"} <= set(row["shipped"]) and row["shipped"]["log_loss"] > 0
    assert 0 < row["threshold"] < 1 and {"micro_f1", "macro_f1"} <= set(row["thresholded"])
    refused = _head_bench("goemotions", "--labels", "30", timeout=120)
    assert refused.returncode == 2 and "--no-setfit" in refused.stderr
