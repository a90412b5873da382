"""Instructions annotators typed become candidates judged like any other (pure logic: the
scripted engine follows a "<word> means <label>" rule written in the instructions)."""
import time

from backend.evaluation.datasets import Dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion, annotator_instructions
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.typed_instruction import most_typed
from backend.refinement.selection.optimizer import optimize_control
from tests.unit.helpers import GOOD, LABELS, MEH, RuleFollowingEngine, WordEmbedder, data


def test_the_most_often_typed_instructions_come_first_and_empty_ones_never():
    assert most_typed(["b", "", "a", "a", "c", "b", "a"]) == ("a", "b")
    assert most_typed(["x", "y"], limit=1) == ("x",)  # a tie: the first listed (the job lists the newest first)
    assert most_typed(["", ""]) == ()
    assert most_typed(["b", "a", "a"], agreed=[None, None, None]) == ("a", "b")  # no effect known: frequency


def test_an_instruction_that_led_to_the_annotators_label_comes_before_a_more_often_typed_one():
    # "often" was typed 4 times and its answer was the annotator's label once; "rare" twice, twice
    typed = ["often", "often", "rare", "often", "rare", "often", "new"]
    agreed = [False, True, True, False, True, False, None]
    assert most_typed(typed, agreed=agreed) == ("rare", "new")
    assert most_typed(typed, limit=3, agreed=agreed) == ("rare", "new", "often")  # unknown: 1/2, between
    # one lucky answer is shrunk: it does not outrank an instruction with 4 agreements of 5
    tried = ["tried"] * 5 + ["lucky"]
    assert most_typed(tried, limit=1, agreed=[True, True, True, True, False, True]) == ("tried",)
    # equal evidence: the more often typed first
    assert most_typed(["x", "y", "y"], agreed=[True, True, True]) == ("y", "x")


def test_typed_instructions_are_judged_as_served_and_calibrated_and_the_good_one_is_chosen():
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    engine = RuleFollowingEngine()
    service = LabelingService(engine, embedder=WordEmbedder())
    texts, gold = data(60)
    decision = optimize_control(service, control, texts, gold, ControlRecipe(), folds=5, shots=0, alpha=0.05,
                                deadline=time.monotonic() + 600, typed=(GOOD, MEH))
    rows = {row["name"]: row for row in decision.table}
    assert {"typed-1", "typed-1+calibrated", "typed-2", "typed-2+calibrated"} <= set(rows)
    assert rows["typed-1"]["macro_f1"] == 1.0 > rows["typed-2"]["macro_f1"]
    assert rows["current"]["macro_f1"] < 1.0
    assert decision.accepted and decision.best.metrics["macro_f1"] == 1.0
    typed_1 = next(r for r in decision.results if r.name == "typed-1")
    assert typed_1.recipe.prompt.instructions == annotator_instructions(control, GOOD)
    assert any(GOOD in prefix for prefix, _ in engine.calls)


def test_an_instruction_the_current_version_already_serves_is_not_judged_again():
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    service = LabelingService(RuleFollowingEngine(), embedder=WordEmbedder())
    texts, gold = data(40)
    current = ControlRecipe(PromptVersion(name="v1", instructions=annotator_instructions(control, GOOD)))
    decision = optimize_control(service, control, texts, gold, current, folds=5, shots=0, alpha=0.05,
                                deadline=time.monotonic() + 600, typed=(GOOD,))
    assert not [row for row in decision.table if row["name"].startswith("typed-")]
