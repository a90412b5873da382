"""The HTML report and metrics.json: numbers match an independent computation, plots are PNGs."""
import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from backend.metrics.html_report import system_metrics, write_report

LABELS = ["a", "b", "c"]


@pytest.fixture
def run():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 3, 120)
    logits = np.eye(3)[gold] * 1.5 + rng.normal(0, 1, (120, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = np.where(rng.random(120) < 0.2, -1, probs.argmax(1))  # a free-text system with unparseable answers
    return gold, probs, pred


def test_metrics_match_sklearn(run):
    gold, probs, _ = run
    m = system_metrics("s", gold, LABELS, probs=probs)
    pred = probs.argmax(1)
    p, r, f, support = precision_recall_fscore_support(gold, pred, labels=[0, 1, 2], zero_division=0)
    for k, row in enumerate(m["per_label"]):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (p[k], r[k], f[k], support[k]), abs=1e-4)
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-4)
    assert m["confusion"] == confusion_matrix(gold, pred, labels=[0, 1, 2]).tolist()
    assert m["coverage"][-1]["accuracy"] == pytest.approx(m["accuracy"], abs=1e-4)
    assert sum(m["score_histogram"]) == len(gold)
    assert sum(b["count"] for b in m["reliability"]) == len(gold)


def test_report_files_and_plots(run, tmp_path):
    gold, probs, pred = run
    systems = [system_metrics("naive free text", gold, LABELS, pred=pred),
               system_metrics("version 0", gold, LABELS, probs=probs)]
    rounds = [{"labels": 25, "macro_f1": 0.4, "head_only_macro_f1": 0.3, "v0_head_ensemble_macro_f1": 0.42},
              {"labels": 50, "macro_f1": 0.5, "head_only_macro_f1": 0.45, "v0_head_ensemble_macro_f1": 0.5}]
    path = write_report(tmp_path, title="t", labels=LABELS, systems=systems, rounds=rounds)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["name"] for s in data["systems"]] == ["naive free text", "version 0"]
    assert data["systems"][0]["accuracy"] == pytest.approx(float((pred == gold).mean()), abs=1e-4)
    assert "ece" not in data["systems"][0]  # hard answers have no scores to calibrate
    page = path.read_text()
    assert "v0_head_ensemble_macro_f1" in page  # the learning-curve table shows every baseline
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 1 + 1 + 4  # learning curve, naive confusion, v0 confusion/reliability/histogram/coverage
    for image in images:
        with Image.open(io.BytesIO(base64.b64decode(image))) as img:
            img.verify()
            assert img.format == "PNG"


def test_the_simulation_keeps_every_served_probability_for_later_analysis(tmp_path):
    from backend.evaluation.datasets import Dataset
    from backend.metrics.html_report import save_probabilities

    data = Dataset("d", ("a", "b"), ("x", "y", "z"), (0, 1, 1))
    v0 = np.array([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    after = np.array([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9]])
    save_probabilities(tmp_path / "p.npz", data, v0, {25: after})
    saved = np.load(tmp_path / "p.npz")
    assert list(saved["labels"]) == ["a", "b"] and list(saved["gold"]) == [0, 1, 1]
    np.testing.assert_array_equal(saved["version_0"], v0)
    np.testing.assert_array_equal(saved["after_25_labels"], after)
