"""`eval` of a multi-label set with the real embedded model: 28 yes/no questions per goemotions item,
all sharing the item's KV-cached prefix."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from backend.evaluation.datasets import load_dataset
from backend.evaluation.run import evaluate
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion, render
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from tests.conftest import DATASETS, MODEL_DIR

pytestmark = pytest.mark.model

GOEMOTIONS = DATASETS / "goemotions" / "test.jsonl"


def test_eval_reads_goemotions_as_multi_label_and_reports_its_metrics(engine):
    data = load_dataset(GOEMOTIONS, limit=4)
    assert data.multiple and len(data.labels) == 28
    report = evaluate(LabelingService(engine), data)
    assert report["multi_label"] and report["n"] == 4 and report["yes_no_questions_per_item"] == 28
    for kind in ("raw", "calibrated"):
        assert {"micro_f1", "macro_f1", "subset_accuracy", "ece", "log_loss"} <= set(report[kind])
        assert 0 <= report[kind]["ece"] <= 1
    assert report["raw"] != report["calibrated"]  # contextual calibration moves the yes/no probabilities
    assert set(report["per_label_calibrated"]) == set(data.labels)
    assert "accuracy" not in report["calibrated"]  # no single-label metrics for a multi-label set


def test_the_28_questions_of_an_item_share_its_prefix_in_the_kv_cache(engine):
    """Tokens evaluated per item = the item once + each question's own suffix and nothing more:
    prefix and item are not re-evaluated for the other 27 questions."""
    data = load_dataset(GOEMOTIONS, limit=3)
    control = parse_label_config(data.label_config()).controls[0]
    service = LabelingService(engine)
    service.calibrator(control, PromptVersion())
    rendered = render(control, PromptVersion())
    suffixes = sum(engine.count_tokens(b.suffix) for b in rendered.branches)
    for text in data.texts:
        before = engine.tokens_evaluated
        service.predict_control(control, ControlRecipe(), [text])
        spent = engine.tokens_evaluated - before
        item = engine.count_tokens(rendered.item(text))
        assert spent <= item + suffixes + 2, (spent, item, suffixes)
        assert spent < 2 * item + suffixes  # would fail if the item were evaluated for each question


def test_eval_cli_report_for_a_multi_label_set(tmp_path):
    from backend.cli import main

    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["eval", "--dataset", str(GOEMOTIONS), "--limit", "3", "--report", str(out)],
                                env={"MODEL_DIR": str(MODEL_DIR)})
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    names = [s["name"] for s in metrics["systems"]]
    assert names == ["version 0 raw", "version 0"]  # the naive free-text baseline is single-label only
    assert all("confusion" not in s and s["multi_label"] for s in metrics["systems"])
    assert np.isclose(sum(b["count"] for b in metrics["systems"][1]["reliability"]), 3 * 28)
