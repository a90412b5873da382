"""What the label suspects look like in Label Studio (pure: the real Label Studio is driven in
tests/e2e/test_label_studio.py), and that a failure half way loses track of nothing."""
import pytest

from backend.labeling.label_config import parse_label_config
from backend.labelstudio import review_tab
from backend.labelstudio.review_tab import SUSPECTS_VERSION, TAB_TITLE, publish, suspect_predictions

CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
<Rating name="stars" toName="text" maxRating="5"/></View>"""
CONTROLS = {c.name: c for c in parse_label_config(CONFIG).controls}


def row(task, given, suggested, p_given, p_suggested, confident=True):
    return {"task_id": task, "annotation_id": task + 100, "given": [given], "suggested": [suggested],
            "p_given": p_given, "p_suggested": p_suggested, "confident": confident}


def test_one_prediction_per_task_with_the_suggested_answers():
    ranking = {"controls": {
        "sentiment": {"suspects": [row(1, "positive", "negative", 0.1, 0.9), row(2, "negative", "positive", 0.3, 0.6)]},
        "stars": {"suspects": [row(1, "5", "1", 0.2, 0.7)]},
        "gone": {"suspects": [row(3, "a", "b", 0.1, 0.9)]},  # a control the config no longer has
    }}
    first, second = suspect_predictions(CONTROLS, ranking)
    assert first["task"] == 1 and first["model_version"] == SUSPECTS_VERSION
    assert [r["type"] for r in first["result"]] == ["choices", "rating"]
    assert first["result"][0]["value"] == {"choices": ["negative"]} and first["result"][1]["value"] == {"rating": 1}
    assert first["mislabeling"] == pytest.approx(0.9) and first["score"] == pytest.approx(0.7)
    assert second["task"] == 2 and second["result"][0]["from_name"] == "sentiment"


def test_confident_suspects_come_first_and_the_list_is_capped(monkeypatch):
    monkeypatch.setattr(review_tab, "MAX_IN_LABEL_STUDIO", 2)
    ranking = {"controls": {"sentiment": {"suspects": [
        row(1, "positive", "negative", 0.05, 0.6, confident=False), row(2, "positive", "negative", 0.3, 0.7),
        row(3, "negative", "positive", 0.2, 0.8)]}}}
    assert [p["task"] for p in suspect_predictions(CONTROLS, ranking)] == [3, 2]


class FailingClient:
    """Deletes and creates predictions until `fail_at` calls; 404 for ids Label Studio lost."""

    def __init__(self, fail_at: int, views=()):
        self.calls, self.fail_at, self.views_made = 0, fail_at, []
        client = self

        class Predictions:
            def delete(self, id):
                client.tick()
                if id == 404:
                    raise type("ApiError", (Exception,), {"status_code": 404})()

            def create(self, **kw):
                client.tick()
                return {"id": 1000 + client.calls}

        class Views:
            def list(self, project):
                return list(views)

            def create(self, project, data):
                client.views_made.append(data)

        self.predictions, self.views = Predictions(), Views()

    def tick(self):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("Label Studio went away")


def test_publish_replaces_the_old_predictions_and_adds_the_tab_once():
    owned = [7, 404]
    new = [{"task": 1, "result": [], "model_version": SUSPECTS_VERSION}]
    client = FailingClient(fail_at=0)
    assert publish(client, 3, new, owned) == {"written": 1, "deleted": 1}
    assert owned == [1003] and client.views_made[0]["title"] == TAB_TITLE
    client = FailingClient(fail_at=0, views=[{"id": 1, "data": {"title": TAB_TITLE}}])
    publish(client, 3, new, owned)
    assert client.views_made == []


def test_a_failure_half_way_keeps_every_id_still_in_label_studio():
    owned = [7, 8]
    new = [{"task": t, "result": [], "model_version": SUSPECTS_VERSION} for t in (1, 2)]
    with pytest.raises(ConnectionError):
        publish(FailingClient(fail_at=4), 3, new, owned)  # 7 and 8 deleted, one written, then down
    assert owned == [1003]
