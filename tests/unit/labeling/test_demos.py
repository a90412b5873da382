"""Per-task nearest demonstrations: which ones each task is shown, pools embedded once (pure logic;
a bag-of-words embedder)."""
import numpy as np

from backend.engines.scripted import ScriptedEngine
from backend.labeling.demos import NearestDemos, nearest_indices
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import Demo, PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.few_shot import nearest_shot
from tests.conftest import load_fixture

CONFIG = load_fixture("predict-choices-single.json")["label_config"]
VOCAB = ("goal", "match", "vote", "election", "chip", "phone", "negative", "positive", "neutral")


class WordEmbedder:
    """Unit bag-of-words vectors over a tiny vocabulary: similarity a test can predict."""

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        rows = np.array([[t.lower().split().count(w) for w in VOCAB] for t in texts], dtype=float) + 1e-3
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_nearest_indices_put_the_most_similar_last_and_cap_k():
    pool = np.eye(3)
    text = np.array([[0.1, 0.9, 0.4]])
    assert nearest_indices(pool, text, 2) == [[2, 1]]
    assert nearest_indices(pool, text, 10) == [[0, 2, 1]]
    assert nearest_indices(pool, text, 0) == [[]]


def test_each_task_is_shown_its_nearest_demos_and_pools_are_embedded_once():
    control = parse_label_config(CONFIG).controls[0]
    embedder = WordEmbedder()
    engine = ScriptedEngine()
    service = LabelingService(engine, calibration="none", embedder=embedder)
    pool = (Demo("goal match goal", ("Positive",)), Demo("vote election", ("Negative",)),
            Demo("chip phone", ("Neutral",)))
    recipe = ControlRecipe(nearest_shot(PromptVersion(), pool, 1, "1-nearest"))
    service.predict_control(control, recipe, ["the match had a goal", "phone chip news"])
    items = [item for _, item in engine.calls]
    assert items[0].startswith("Text: goal match goal\nLabel: Positive")
    assert items[1].startswith("Text: chip phone\nLabel: Neutral")
    assert len({prefix for prefix, _ in engine.calls}) == 1
    calls = embedder.calls
    service.predict_control(control, recipe, ["election vote"])
    assert embedder.calls == calls + 1  # the texts only: the pool's embeddings were kept
    assert NearestDemos(embedder).for_texts((), ["x"], 2) == [()]


def test_judging_a_version_on_its_own_pool_leaves_each_item_out_of_its_demos():
    pool = (Demo("goal match", ("Positive",)), Demo("goal match goal", ("Negative",)), Demo("vote", ("Neutral",)))
    chooser = NearestDemos(WordEmbedder())
    assert chooser.for_texts(pool, ["goal match"], 1) == [(pool[0],)]
    assert chooser.for_texts(pool, ["goal match"], 1, leave_out_self=True) == [(pool[1],)]
    assert nearest_indices(np.eye(3), np.eye(3)[:1], 2, exclude=[{0}]) == [[2, 1]]  # tie: pool order, reversed
