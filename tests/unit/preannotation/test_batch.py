"""Which tasks `preannotate` picks, and how a batch with a bad task is written (pure logic: the
scripted engine and an in-memory stand-in for the Label Studio client; the real Label Studio
is driven in tests/e2e)."""
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService
from backend.preannotation.batch import Preannotator, Selection
from backend.settings import Settings
from backend.store.versions import VersionRegistry
from tests.conftest import load_fixture

CONFIG = load_fixture("predict-choices-single.json")["label_config"]
V = "scripted.abc123.v1"


def _task(*predictions, task_id=1):
    return {"id": task_id, "data": {"text": "x"},
            "predictions": [{"id": i, "model_version": v, "score": s} for i, (v, s) in enumerate(predictions, 1)]}


@pytest.mark.parametrize(
    "selection, task, wanted",
    [
        (Selection(), _task(), True),
        (Selection(), _task(("old", 0.99)), True),
        (Selection(), _task(("old", 0.2), (V, 0.9)), False),  # carries the current version: resumable
        (Selection(only_missing=True), _task(), True),
        (Selection(only_missing=True), _task(("old", 0.1)), False),
        (Selection(below_score=0.7), _task(), True),
        (Selection(below_score=0.7), _task(("old", 0.65)), True),
        (Selection(below_score=0.7), _task(("old", 0.95)), False),
        (Selection(below_score=0.7), _task(("old", 0.2), ("older", 0.95)), False),  # the latest counts
        (Selection(below_score=0.7), _task(("old", 0.95), ("older", None)), True),
        # a label-suspect prediction questions an annotation; it is not the task's prediction
        (Selection(below_score=0.7), _task(("old", 0.95), ("label-suspects", 0.3)), False),
        (Selection(only_missing=True), _task(("label-suspects", 0.9)), True),
    ],
)
def test_selection(selection, task, wanted):
    assert selection.wants(task, V) is wanted


class _Namespace:
    def __init__(self, **methods):
        self.__dict__.update(methods)


class FakeLabelStudio:
    """Only the calls Preannotator makes, over a list of task dicts."""

    def __init__(self, tasks):
        self.store = tasks
        self.created = []
        self.updated = {}
        self.projects = _Namespace(get=lambda id: {"id": id, "label_config": CONFIG},
                                   update=lambda id, **kw: self.updated.update(kw))
        self.tasks = _Namespace(list=lambda **kw: iter(self.store))
        self.predictions = _Namespace(create=lambda **kw: self.created.append(kw))


def test_a_task_without_its_field_fails_alone_and_the_rest_is_written(tmp_path):
    tasks = [{"id": i, "data": {"text": f"I love it {i}"}, "predictions": []} for i in range(1, 6)]
    tasks[2]["data"] = {"other": "no text field"}
    client = FakeLabelStudio(tasks)
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "PREANNOTATE_BATCH": "2"})
    annotator = Preannotator(client, LabelingService(ScriptedEngine()),
                             VersionRegistry(None, "scripted", tmp_path, ModelVersion), settings)
    report = annotator.run(7, set_project_version=True)
    assert report.predicted == 4 and [f["task"] for f in report.failed] == [3]
    assert "data.text is missing" in report.failed[0]["error"]
    assert [c["task"] for c in client.created] == [1, 2, 4, 5]
    assert {c["model_version"] for c in client.created} == {report.model_version}
    assert all(c["score"] == c["result"][0]["score"] for c in client.created)
    assert client.updated == {"model_version": report.model_version}
