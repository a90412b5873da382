"""Request-path logic with the scripted engine (pure logic; the real model is tested in tests/model)."""
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.errors import BadRequest
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService, extract_texts
from tests.conftest import load_fixture

CONFIG = load_fixture("predict-choices-single.json")["label_config"]


def _task(text):
    return {"id": 1, "data": {"text": text}}


@pytest.mark.parametrize(
    "tasks, field",
    [
        ("nope", "tasks"),
        ([], "tasks"),
        ([{"id": 1}], "tasks[0].data"),
        ([_task("ok"), {"data": {"other": "x"}}], "tasks[1].data.text"),
        ([_task("   ")], "tasks[0].data.text"),
        ([_task({"nested": 1})], "tasks[0].data.text"),
    ],
)
def test_bad_tasks_name_the_field(tasks, field):
    with pytest.raises(BadRequest) as err:
        extract_texts(tasks, parse_label_config(CONFIG), max_chars=100)
    assert err.value.field == field


def test_long_text_is_truncated_with_a_warning():
    (item,) = extract_texts([_task("word " * 50)], parse_label_config(CONFIG), max_chars=20)
    assert len(item.texts["text"]) == 20
    assert "truncated" in item.warnings[0]


def test_predictions_follow_task_order_and_stay_in_the_label_set():
    label_task = parse_label_config(CONFIG)
    service = LabelingService(ScriptedEngine(), calibration="none")
    texts = ["negative negative day", "positive vibes", "neutral neutral neutral"]
    items = extract_texts([_task(t) for t in texts], label_task, 1000)
    results = service.predict(items, label_task, ModelVersion("scripted.v0"))
    chosen = [r["result"][0]["value"]["choices"][0] for r in results]
    assert chosen == ["Negative", "Positive", "Neutral"]
    for r in results:
        assert sum(r["result"][0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert r["model_version"] == "scripted.v0"


def test_content_free_calibration_is_computed_once_per_control_and_version():
    label_task = parse_label_config(CONFIG)
    engine = ScriptedEngine()
    service = LabelingService(engine, calibration="contextual")
    items = extract_texts([_task("positive")], label_task, 1000)
    service.predict(items, label_task, ModelVersion("v"))
    n_calls = len(engine.calls)
    service.predict(items, label_task, ModelVersion("v"))
    assert len(engine.calls) == n_calls + 1  # the second request scores only its task
