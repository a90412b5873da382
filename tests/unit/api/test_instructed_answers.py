"""/predict keeps what a typed instruction made the model answer, read back the way an annotation
is read (a star as "2", a taxonomy path as its label), and a Redis failure never fails the answer
(fake Redis: the real one is exercised in tests/integration/test_instruction_effect.py)."""
import json
from types import SimpleNamespace

import redis
from flask import Flask

from backend.api.ml import _remember_instructed
from backend.labeling.label_config import parse_label_config

CONFIG = ('<View><Text name="text" value="$text"/><TextArea name="prompt" toName="text"/>'
          '<Choices name="tone" toName="text" choice="multiple"><Choice value="A"/><Choice value="B"/>'
          '<Choice value="C"/></Choices><Rating name="stars" toName="text" maxRating="3"/>'
          '<Taxonomy name="geo" toName="text"><Choice value="Europe"><Choice value="Spain" alias="ES"/></Choice>'
          '</Taxonomy></View>')
REGIONS = [
    {"from_name": "tone", "to_name": "text", "type": "choices", "value": {"choices": ["A", "C"]}, "score": 0.42},
    {"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 2}, "score": 0.5},
    {"from_name": "geo", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": [["Europe", "ES"]]},
     "score": 0.9},
]


class Recording:
    def __init__(self, fail: bool = False):
        self.fail, self.hashes, self.ttl = fail, {}, {}

    def pipeline(self, transaction=False):
        return self

    def hset(self, name, mapping):
        self.hashes.setdefault(name, {}).update(mapping)

    def expire(self, name, seconds):
        self.ttl[name] = seconds

    def execute(self):
        if self.fail:
            raise redis.ConnectionError("Redis is down")


def _remember(conn, tasks, instruction="Spain is in Europe") -> None:
    app = Flask("t")
    app.extensions["llmlb.redis"] = conn
    with app.app_context():
        _remember_instructed(4, tasks, parse_label_config(CONFIG), SimpleNamespace(instruction=instruction),
                             [{"result": REGIONS, "score": 0.1}])


def test_the_instructed_answers_are_kept_per_task_as_an_annotation_would_read_them():
    conn = Recording()
    _remember(conn, [{"id": 9}])
    (name,) = conn.hashes
    assert name.endswith(":project:4:task:9:instructed") and conn.ttl[name] == 24 * 3600
    kept = {field.split(":", 1)[1]: json.loads(value) for field, value in conn.hashes[name].items()}
    assert kept == {"tone": {"answer": ["A", "C"], "probability": 0.42},
                    "stars": {"answer": ["2"], "probability": 0.5},
                    "geo": {"answer": ["Europe / Spain"], "probability": 0.9}}


def test_nothing_is_kept_without_an_instruction_or_a_task_id_and_a_redis_failure_is_only_logged(caplog):
    conn = Recording()
    _remember(conn, [{"id": 9}], instruction="")
    for tasks in ([{}], [{"id": True}], [{"id": "9"}], [{"id": 9}, {"id": 10}]):
        _remember(conn, tasks)
    assert conn.hashes == {}
    _remember(Recording(fail=True), [{"id": 9}])
    assert "the instructed answer was not kept" in caplog.text


def test_a_redis_failure_reading_the_effect_stores_the_annotation_without_it(caplog):
    from backend.api.learning_events import LearningEvents
    from backend.store.ground_truth import GoldItem, GroundTruthStore

    class Down:
        def hmget(self, *args):
            raise redis.ConnectionError("Redis is down")

    gold = GoldItem(9, {"text": "t"}, {"tone": ["A"]}, 1, "2026-01-01", instruction="Spain is in Europe")
    events = LearningEvents(Down(), scheduler=None)
    assert events._with_effect(GroundTruthStore(Down(), 4), gold) is gold
    assert "the instruction's effect was not read" in caplog.text
    untyped = GoldItem(9, {"text": "t"}, {"tone": ["A"]}, 1, "2026-01-01")
    assert events._with_effect(GroundTruthStore(Down(), 4), untyped) is untyped  # nothing typed: no read
