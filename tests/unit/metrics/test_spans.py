"""Span F1: exact, partial (overlap, each gold span once) and unlabelled."""
import pytest

from backend.metrics.spans import correct_flags, span_scores


def test_exact_partial_and_unlabelled_counts():
    gold = [[(0, 5, "PER"), (10, 15, "LOC")], [(0, 3, "ORG")]]
    pred = [[(0, 5, "PER"), (9, 15, "LOC")], [(0, 3, "PER"), (5, 8, "ORG")]]
    s = span_scores(pred, gold)
    assert s["predicted"] == 4 and s["gold"] == 3
    assert s["exact"]["precision"] == pytest.approx(1 / 4) and s["exact"]["recall"] == pytest.approx(1 / 3)
    assert s["partial"]["precision"] == pytest.approx(2 / 4)  # (9, 15) overlaps (10, 15) with its label
    assert s["unlabelled"]["recall"] == pytest.approx(2 / 3)  # (0, 3) is found, mistyped


def test_one_gold_span_earns_partial_credit_once():
    s = span_scores([[(0, 2, "A"), (2, 4, "A")]], [[(0, 4, "A")]])
    assert s["partial"]["precision"] == 0.5 and s["partial"]["recall"] == 1.0


def test_nothing_predicted_is_zero_not_an_error():
    s = span_scores([[]], [[(0, 1, "A")]])
    assert s["exact"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_correct_flags():
    assert correct_flags([(0, 1, "A"), (0, 1, "B")], [(0, 1, "A")]) == [True, False]


def test_span_system_reports_per_label_and_renders_beside_choices(tmp_path):
    from backend.metrics.html_report import write_report
    from backend.metrics.spans import span_system

    system = span_system("ner: current", [[(0, 5, "PER"), (6, 9, "LOC")]], [[(0, 5, "PER"), (6, 9, "PER")]], ["PER", "LOC"])
    assert system["exact_f1"] == 0.5 and system["n"] == 1
    assert [(r["label"], r["f1"], r["support"]) for r in system["per_label"]] == [("PER", 0.6667, 2), ("LOC", 0.0, 0)]
    page = write_report(tmp_path, title="v1", labels=["PER", "LOC"], systems=[system]).read_text()
    assert "partial_f1" in page and "ner: current" in page
