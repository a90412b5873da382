"""`interactive-bench`'s pure parts: the config and bodies it sends (read back by the backend's own
parsers), the answers it checks, latency and accuracy figures and the report."""
import pytest

from backend.evaluation.datasets import Dataset
from backend.evaluation.interactive_bench import (
    INSTRUCTION_AREA, LABEL_CONTROL, OTHER_CONTROL, InteractiveBenchError, bench_config, chosen_label, context_for,
    evidence_effect, format_report, label_scores, latency, mode_plan, paired_effect, predict_body, regions,
)
from backend.labeling.label_config import parse_label_config
from backend.labelstudio.payloads import editor_context
from tests.conftest import load_fixture

DATA = Dataset("polarity", ("positive", "negative"), ("great film", "dull & long"), (0, 1))


def test_the_config_has_the_data_sets_control_a_yes_no_one_and_an_instruction_area():
    task = parse_label_config(bench_config(DATA.labels))
    controls = {c.name: tuple(c.labels) for c in task.controls}
    assert controls == {LABEL_CONTROL: DATA.labels, OTHER_CONTROL: ("Yes", "No")}
    assert task.instruction_area is not None and task.instruction_area.name == INSTRUCTION_AREA


def test_the_data_sets_control_can_be_named():
    task = parse_label_config(bench_config(DATA.labels, "sentiment"))
    assert [c.name for c in task.controls] == ["sentiment", OTHER_CONTROL]
    plan = mode_plan([], "sentiment")
    assert {m["control"] for m in plan} == {"sentiment"} and plan[0]["expect"] == ("sentiment", OTHER_CONTROL)
    assert context_for(plan[1], "positive")[0]["from_name"] == "sentiment"


def test_labels_with_markup_characters_are_quoted():
    task = parse_label_config(bench_config(('a "b"', "c<d")))
    assert tuple(next(c for c in task.controls if c.name == LABEL_CONTROL).labels) == ('a "b"', "c<d")


def test_the_modes_and_what_each_sends_as_the_backend_reads_it():
    config = bench_config(DATA.labels)
    task = parse_label_config(config)
    plan = mode_plan(["Is it positive?"])
    assert [m["mode"] for m in plan] == ["batch", "evidence", "evidence, other label", "instruction 1"]
    batch, evidence, _, typed = (predict_body(7, "great film", config, context_for(m, "positive")) for m in plan)
    assert "params" not in batch and editor_context(task, batch) is None
    read = editor_context(task, evidence)
    assert read.choices == {LABEL_CONTROL: ("positive",)} and read.instruction == ""
    read = editor_context(task, typed)
    assert read.instruction == "Is it positive?" and not read.choices
    assert set(plan[1]["expect"]) == set(plan[2]["expect"]) == {OTHER_CONTROL}
    assert set(plan[3]["expect"]) == {LABEL_CONTROL, OTHER_CONTROL}


def test_the_evidence_modes_choose_the_gold_label_then_the_next_one():
    gold_mode, other_mode = mode_plan([])[1:]
    assert [chosen_label(gold_mode, g, 3) for g in (0, 1, 2)] == [0, 1, 2]
    assert [chosen_label(other_mode, g, 3) for g in (0, 1, 2)] == [1, 2, 0]
    assert chosen_label(mode_plan([])[0], 1, 3) is None


def test_an_interactive_body_has_the_captured_shape():
    captured = load_fixture("predict-interactive.json")
    body = predict_body(7, "x", bench_config(DATA.labels), [])
    assert set(body) <= set(captured) and set(body["params"]) == set(captured["params"])
    assert body["project"].split(".")[0] == "1" and len(body["tasks"]) == 1


def test_without_instructions_only_batch_and_evidence_run():
    assert [m["mode"] for m in mode_plan([])] == ["batch", "evidence", "evidence, other label"]


def test_the_answer_is_read_per_control_and_one_result_is_required():
    answer = {"results": [{"result": [
        {"from_name": "recommend", "probabilities": {"Yes": 0.6, "No": 0.4}, "value": {"choices": ["Yes"]}}]}]}
    assert regions(answer) == {"recommend": {"Yes": 0.6, "No": 0.4}}
    with pytest.raises(InteractiveBenchError, match="2 results for one task"):
        regions({"results": [{}, {}]})


def test_latency_reports_the_first_request_apart():
    row = latency([900.0] + [100.0 + i for i in range(20)])
    assert row["requests"] == 21 and row["first_ms"] == 900.0
    assert row["warm_p50_ms"] == 109.5 and row["warm_max_ms"] == 119.0
    assert row["warm_p95_ms"] == pytest.approx(118.05, abs=0.1)
    assert latency([5.0]) == {"requests": 1, "first_ms": 5.0}
    assert latency([]) == {"requests": 0}


def test_accuracy_macro_f1_and_the_evidence_read():
    probs = [{"positive": 0.7, "negative": 0.3}, {"positive": 0.6, "negative": 0.4},
             {"positive": 0.2, "negative": 0.8}, {"positive": 0.1, "negative": 0.9}]
    scores = label_scores([0, 1, 1, 1], probs, DATA.labels)
    assert scores["accuracy"] == 0.75 and scores["macro_f1"] == pytest.approx(0.7333, abs=1e-4)
    yes = [{"Yes": 0.8, "No": 0.2}, {"Yes": 0.4, "No": 0.6}, {"Yes": 0.2, "No": 0.8}]
    assert evidence_effect([0, 1, 1], yes, DATA.labels) == {"positive": 0.8, "negative": 0.3}
    assert evidence_effect([1], yes[:1], DATA.labels) == {"negative": 0.8}


def test_the_evidence_is_paired_on_the_same_tasks():
    # task 0 is positive: gold chosen = positive, other = negative; task 1 the other way round
    gold_chosen = [{"Yes": 0.7}, {"Yes": 0.2}]
    other_chosen = [{"Yes": 0.4}, {"Yes": 0.5}]
    paired = paired_effect(gold_chosen, other_chosen, [0, 1], DATA.labels)
    assert paired == {"tasks": 2, "mean_p_yes_positive_chosen": 0.6, "mean_p_yes_negative_chosen": 0.3,
                      "tasks_higher_with_positive": 2}
    assert paired_effect(gold_chosen, other_chosen, [0, 1], ("a", "b", "c")) is None


def report(instructions: bool) -> dict:
    modes = [{"mode": "batch", "name": "batch form (no context)", "requests": 3, "first_ms": 900.0,
              "warm_p50_ms": 100.0, "warm_p95_ms": 120.0, "warm_max_ms": 130.0, "unexpected_answers": 0,
              "accuracy": 0.6, "macro_f1": 0.55},
             {"mode": "evidence", "name": "interactive evidence", "requests": 3, "first_ms": 500.0,
              "warm_p50_ms": 50.0, "warm_p95_ms": 60.0, "warm_max_ms": 61.0, "unexpected_answers": 0,
              "mean_p_yes_by_chosen_label": {"positive": 0.6, "negative": 0.4}}]
    if instructions:
        modes.append({"mode": "instruction 1", "name": "typed 1", "instruction": "Is it positive?", "requests": 3,
                      "first_ms": 800.0, "warm_p50_ms": 110.0, "warm_p95_ms": 121.0, "warm_max_ms": 122.0,
                      "unexpected_answers": 1, "accuracy": 0.7, "macro_f1": 0.68})
    return {"dataset": "polarity", "tasks": 3, "cpus": 2, "llm_n_threads": 1, "control": "sentiment",
            "load_average_1min": {"start": 1.0, "end": 2.0}, "modes": modes,
            "evidence_same_tasks": {"tasks": 3, "mean_p_yes_positive_chosen": 0.6, "mean_p_yes_negative_chosen": 0.4,
                                    "tasks_higher_with_positive": 3} if instructions else None}


def test_the_report_shows_latency_per_mode_and_accuracy_against_the_batch():
    text = format_report(report(instructions=True))
    assert "| batch form (no context) | 900 | 100 | 120 | 130 | 0 |" in text
    assert "| typed: 'Is it positive?' | 0.700 | 0.680 | +0.130 |" in text
    assert "| batch form | 0.600 | 0.550 |  |" in text
    assert ("the same 3 tasks with each sentiment chosen: mean P(Yes) of recommend 0.600 with positive, 0.400 with "
            "negative; higher with positive on 3 of 3 tasks") in text
    assert "| sentiment control vs gold |" in text and "LLM_N_THREADS=1" in text
    assert "not run" not in text


def test_the_report_says_when_no_instruction_was_given():
    text = format_report(report(instructions=False))
    assert "the typed-instruction mode was not run" in text
    assert "evidence: mean P(Yes) of recommend by the sentiment chosen: positive 0.600, negative 0.400" in text
