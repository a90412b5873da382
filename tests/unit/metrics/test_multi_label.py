"""Multi-label metrics against sklearn, the serving rule for predicted sets, and the report of a
multi-label system (no confusion matrix)."""
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from backend.metrics import multi_label as ml
from backend.metrics.html_report import multilabel_system_metrics, write_report

LABELS = ["joy", "anger", "fear", "surprise", "neutral"]


@pytest.fixture
def run():
    rng = np.random.default_rng(11)
    gold = (rng.random((150, 5)) < [0.3, 0.2, 0.1, 0.15, 0.4]).astype(int)
    gold[gold.sum(1) == 0, 4] = 1  # every item has a label, as annotations do
    probs = np.clip(gold * 0.55 + rng.normal(0.2, 0.2, gold.shape), 0.001, 0.999)
    return gold, probs


def test_predicted_sets_follow_the_serving_rule():
    probs = np.array([[0.7, 0.2, 0.6], [0.1, 0.4, 0.3]])
    np.testing.assert_array_equal(ml.predicted_sets(probs), [[True, False, True], [False, True, False]])


def test_metrics_match_sklearn(run):
    gold, probs = run
    pred = ml.predicted_sets(probs)
    assert gold.sum(0).min() > 0  # every label occurs, so "labels present" = all labels
    assert ml.micro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="micro"))
    assert ml.macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro"))
    assert ml.subset_accuracy(gold, pred) == pytest.approx(accuracy_score(gold, pred))
    p, r, f, support = precision_recall_fscore_support(gold, pred, zero_division=0)
    for k, row in enumerate(ml.per_label(gold, pred, LABELS)):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (p[k], r[k], f[k], support[k]), abs=1e-4)


def test_macro_f1_leaves_out_labels_nobody_used_or_predicted():
    gold = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    pred = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]])
    expected = f1_score(gold, pred, average="macro", labels=[0, 1], zero_division=0)
    assert ml.macro_f1(gold, pred) == pytest.approx(expected)


def test_yes_no_ece_by_hand():
    gold = np.array([[1, 0], [0, 0], [0, 0], [1, 0]])
    honest = np.array([[0.5, 0.05], [0.5, 0.05], [0.5, 0.05], [0.5, 0.05]])  # 2/4 yes at .5, 0/4 at .05
    assert ml.yes_no_ece(gold, honest) == pytest.approx(0.5 * 0.0 + 0.5 * 0.05)
    confident = np.array([[0.95, 0.95]] * 4)
    assert ml.yes_no_ece(gold, confident) == pytest.approx(0.95 - 2 / 8)
    rows = ml.yes_no_reliability(gold, confident)
    assert sum(r["count"] for r in rows) == 8 and rows[-1]["accuracy"] == pytest.approx(0.25)


def test_log_loss_per_item_sums_over_labels():
    gold = np.array([[1, 0]])
    probs = np.array([[0.8, 0.3]])
    assert ml.log_loss_per_item(gold, probs)[0] == pytest.approx(-np.log(0.8) - np.log(0.7))


# Written by metrics/html_report.py; here because it needs this file's `run` fixture and `LABELS`,
# which tests/unit/metrics/test_html_report.py defines otherwise (single choice, three labels).
def test_report_of_a_multi_label_system_has_no_confusion_matrix(run, tmp_path):
    gold, probs = run
    system = multilabel_system_metrics("version 0", gold, LABELS, probs)
    assert "confusion" not in system and system["multi_label"]
    assert system["micro_f1"] == pytest.approx(f1_score(gold, ml.predicted_sets(probs), average="micro"), abs=1e-4)
    assert sum(b["count"] for b in system["reliability"]) == gold.size
    assert system["coverage"][-1]["accuracy"] == pytest.approx(system["subset_accuracy"], abs=1e-4)
    page = write_report(tmp_path, title="t", labels=LABELS, systems=[system]).read_text()
    assert "subset_accuracy" in page and 'alt="confusion"' not in page and 'alt="reliability"' in page
    assert json.loads((tmp_path / "metrics.json").read_text())["systems"][0]["macro_f1"] == system["macro_f1"]
