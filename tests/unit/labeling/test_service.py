"""Request-path logic with the scripted engine (pure logic; the real model is tested in tests/model)."""
import time

import numpy as np
import pytest

from backend.engines.base import Capabilities
from backend.engines.scripted import ScriptedEngine
from backend.errors import BadRequest
from backend.labeling.calibration import softmax
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.service import LabelingService, extract_texts, map_tasks
from tests.conftest import load_fixture
from tests.unit.helpers import sentiment_control as _control

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
        ([_task(True)], "tasks[0].data.text"),
        ([_task("ok"), _task("a lone \ud800 surrogate")], "tasks[1].data.text"),  # no UTF-8 for it
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


def test_self_consistency_averages_what_each_rationale_leads_to():
    """The scripted engine scores a label by how often its word is in the item, rationale included."""
    engine = ScriptedEngine(rationales=("good good", "bad"))
    service = LabelingService(engine, calibration="none")
    control = _control()
    direct = service.logits(control, PromptVersion(), "plain text")[0]
    one = service.logits(control, PromptVersion(reasoning=Reasoning(1)), "plain text")[0]
    two = service.logits(control, PromptVersion(reasoning=Reasoning(2, temperature=0.7)), "plain text")[0]
    assert softmax(direct)[0] == pytest.approx(0.5)
    assert softmax(one)[0] > 0.98  # "good good" in the rationale
    p_bad_sample = softmax(np.array([-3.0, -1.0]))  # after "bad"
    assert np.allclose(softmax(two), (softmax(one) + p_bad_sample) / 2)


def test_map_tasks_keeps_order_and_stops_sending_after_a_failure():
    started = []

    def fn(i):
        started.append(i)
        time.sleep(0.02)
        if i == 1:
            raise RuntimeError("boom")
        return i * 10

    assert map_tasks(lambda i: i * 10, [3, 1, 2], workers=2) == [30, 10, 20]
    with pytest.raises(RuntimeError, match="boom"):
        map_tasks(fn, list(range(50)), workers=2)
    assert len(started) < 10


def test_an_instruction_typed_in_the_editor_replaces_the_versions_for_that_request_only():
    from backend.labeling.recipe import ControlRecipe
    from backend.labelstudio.payloads import EditorContext

    config = ('<View><Text name="text" value="$text"/><TextArea name="instruction" toName="text"/>'
              '<Choices name="sentiment" toName="text"><Choice value="good"/><Choice value="bad"/></Choices></View>')
    label_task = parse_label_config(config)
    engine = ScriptedEngine()
    service = LabelingService(engine, calibration="none")
    items = extract_texts([_task("good food")], label_task, 1000)
    version = ModelVersion("v1", controls={"sentiment": ControlRecipe(PromptVersion(name="v1", instructions="Own."))})
    # the editor sends the choices set so far with the instruction: they are answered anew
    typed = service.predict(items, label_task, version,
                            EditorContext(answered=frozenset({"sentiment"}), instruction="Late food is bad."))
    prefixes = {prefix for prefix, _ in engine.calls}
    assert any(p.startswith("Late food is bad. Answer with exactly one of: good, bad.") for p in prefixes)
    assert not any("Own." in p for p in prefixes)
    assert typed[0]["result"][0]["value"]["choices"] == ["good"]  # still one of the config's labels
    engine.calls.clear()
    service.predict(items, label_task, version)
    assert all(prefix.startswith("Own.") for prefix, _ in engine.calls)


def test_a_version_whose_head_alone_answers_runs_no_llm_pass():
    from backend.labeling.head import HeadWeights
    from backend.labeling.recipe import ControlRecipe
    from tests.unit.helpers import WordEmbedder

    label_task = parse_label_config(CONFIG)
    control = label_task.controls[0]
    n_dims = len(WordEmbedder.VOCAB) + 1
    coef = tuple(tuple(3.0 if d == k else 0.0 for d in range(n_dims)) for k in range(len(control.labels)))
    head = HeadWeights(coef, (0.0,) * len(control.labels), weight_llm=0.0)
    engine = ScriptedEngine()
    service = LabelingService(engine, embedder=WordEmbedder())
    version = ModelVersion("v2", controls={control.name: ControlRecipe(PromptVersion(name="v2", nearest=4), head=head)})
    items = extract_texts([_task("win a prize"), _task("see you at lunch")], label_task, 1000)
    results = service.predict(items, label_task, version)
    assert engine.calls == []  # neither the tasks nor a content-free calibration were scored
    expected = head.combine(np.full((2, len(control.labels)), 1 / len(control.labels)),
                            WordEmbedder().encode(["win a prize", "see you at lunch"]))
    for result, probs in zip(results, expected):
        (region,) = result["result"]
        assert list(region["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-6)
        assert region["probability_source"] == "embedding head" and region["value"]["choices"][0] in control.labels
    pooled = ModelVersion("v3", controls={control.name: ControlRecipe(head=HeadWeights(coef, (0.0,) * 3, weight_llm=0.5))})
    service.predict(items, label_task, pooled)
    assert engine.calls  # a head pooled with the LLM still needs its answer
    engine.calls.clear()
    wide = tuple(row + (0.0,) * len(control.labels) for row in coef)  # the LLM's log-probabilities as features too
    stacked = ModelVersion("v4", controls={control.name: ControlRecipe(
        head=HeadWeights(wide, (0.0,) * 3, weight_llm=0.0, llm_scale=1.0))})
    (region,) = service.predict(items[:1], label_task, stacked)[0]["result"]
    assert engine.calls and region.get("probability_source") != "embedding head"  # weight 0, yet it reads the LLM


MOOD_AND_TONE = ('<View><Text name="text" value="$text"/><TextArea name="prompt" toName="text"/>'
                 '<Choices name="mood" toName="text"><Choice value="good"/><Choice value="bad"/></Choices>'
                 '<Choices name="tone" toName="text"><Choice value="good"/><Choice value="bad"/></Choices></View>')


def test_an_interactive_request_scores_the_other_controls_with_the_annotators_choices_as_evidence():
    """The scripted engine counts a label's word in the item, so the evidence line "Annotated
    mood: good" is what makes "good" the tone of a text that says neither."""
    from backend.labelstudio.payloads import editor_context

    label_task = parse_label_config(MOOD_AND_TONE)
    engine = ScriptedEngine()
    service = LabelingService(engine, calibration="contextual")
    items = extract_texts([_task("so so")], label_task, 1000)

    def interactive(mood):
        result = [{"from_name": "mood", "to_name": "text", "type": "choices", "value": {"choices": [mood]}}]
        context = editor_context(label_task, {"params": {"context": {"result": result}}})
        (answer,) = service.predict(items, label_task, ModelVersion("v"), context)
        assert [r["from_name"] for r in answer["result"]] == ["tone"]  # mood is the annotator's
        return answer["result"][0]["probabilities"]

    good = interactive("good")
    n_calls = len(engine.calls)
    bad = interactive("bad")
    assert good["good"] > 0.8 and bad["bad"] > 0.8
    # calibration saw the same line with a content-free value, once for both answers
    assert len(engine.calls) == n_calls + 1
    assert {item for _, item in engine.calls[:3]} == {f"Text: {t}\nAnnotated mood: N/A\nLabel:" for t in ("N/A", "", "[MASK]")}
    assert engine.calls[3][1] == "Text: so so\nAnnotated mood: good\nLabel:"
    engine.calls.clear()
    (batch,) = service.predict(items, label_task, ModelVersion("v"))
    assert [r["from_name"] for r in batch["result"]] == ["mood", "tone"]
    assert batch["result"][1]["probabilities"] == pytest.approx({"good": 0.5, "bad": 0.5})
    assert not any("Annotated" in item for _, item in engine.calls)
    # a typed instruction answers every control anew, without evidence
    engine.calls.clear()
    typed = [{"from_name": "mood", "value": {"choices": ["good"]}}, {"from_name": "prompt", "value": {"text": ["Be fair."]}}]
    context = editor_context(label_task, {"params": {"context": {"result": typed}}})
    (answer,) = service.predict(items, label_task, ModelVersion("v"), context)
    assert [r["from_name"] for r in answer["result"]] == ["mood", "tone"]
    assert not any("Annotated" in item for _, item in engine.calls)


def test_a_fitted_calibrator_with_evidence_is_moved_by_what_the_lines_do_to_content_free_inputs():
    """A control named "good_mood" puts the word "good" in its evidence line whatever its value,
    a shift the version's fitted calibrator never saw: content-free inputs with the line must
    come out as they did without it."""
    from backend.labeling.calibration import Calibrator
    from backend.labeling.recipe import ControlRecipe

    label_task = parse_label_config(MOOD_AND_TONE.replace('"mood"', '"good_mood"'))
    tone = label_task.controls[1]
    service = LabelingService(ScriptedEngine(), calibration="contextual")
    fitted = ControlRecipe(PromptVersion(name="v1"), calibrator=Calibrator((0.4, -0.4), 0.8, "fitted"))
    with_lines = fitted.with_evidence((("good mood", "bad"),))
    assert with_lines.calibrator == fitted.calibrator and with_lines.prompt.evidence
    served = service.calibrated(tone, with_lines)
    assert served != fitted.calibrator
    content_free_with_lines = service.logits(tone, with_lines.prompt.shared, "N/A")[0]
    content_free = service.logits(tone, fitted.prompt, "N/A")[0]
    assert not np.allclose(content_free_with_lines, content_free)  # the line alone moves the answer
    assert np.allclose(served.apply(content_free_with_lines, False), fitted.calibrator.apply(content_free, False))
    assert service.calibrated(tone, fitted) == fitted.calibrator  # without evidence: as fitted


def test_a_head_that_answers_alone_gets_no_evidence_and_a_pooled_head_keeps_its_weights():
    from backend.labeling.head import HeadWeights
    from backend.labeling.recipe import ControlRecipe

    head = HeadWeights(((1.0,), (0.0,)), (0.0, 0.0), weight_llm=0.0)
    alone = ControlRecipe(PromptVersion(name="v2"), head=head)
    assert alone.with_evidence((("mood", "good"),)) is alone
    pooled = ControlRecipe(PromptVersion(name="v2"), head=HeadWeights(((1.0,), (0.0,)), (0.0, 0.0), weight_llm=0.5),
                           threshold=0.3)
    shown = pooled.with_evidence((("mood", "good"),))
    assert (shown.head, shown.threshold, shown.prompt.evidence) == (pooled.head, 0.3, (("mood", "good"),))
    assert pooled.with_evidence(()) is pooled
    stateful = ControlRecipe(head=HeadWeights(((1.0, 0.0),), (0.0,), weight_llm=0.5, state_weight=1.0,
                                              state_mean=(0.0,)))
    assert stateful.with_evidence((("mood", "good"),)) is stateful  # evidence lines would move the state


class StatefulEngine(ScriptedEngine):
    """The scripted engine with a state at the answer: 1 where "prize" is in the item, else -1."""

    capabilities = Capabilities(exact_logprobs=True, max_context=4096, answer_state=True)

    def __init__(self):
        super().__init__()
        self.with_state = 0

    def score_with_state(self, prefix, item, branches):
        self.with_state += 1
        return self.score(prefix, item, branches), [np.array([1.0 if "prize" in item else -1.0, 0.0], np.float32)]


class Sink:
    def __init__(self):
        self.entries = {}

    def field(self, multiple, rendered, text, max_context):
        return text.encode()

    def put_many(self, entries):
        self.entries.update(entries)


def test_a_head_that_reads_the_state_at_the_answer_gets_it_and_kept_logits_carry_it():
    from backend.labeling.head import HeadWeights
    from backend.labeling.recipe import ControlRecipe
    from tests.unit.helpers import WordEmbedder

    label_task = parse_label_config(CONFIG)
    control = label_task.controls[0]
    n = len(control.labels)
    # reads the state alone: label 0 where it is +1 ("prize"), label 1 where it is -1
    coef = tuple(tuple([0.0] * (len(WordEmbedder.VOCAB) + 1) + [s, 0.0]) for s in (5.0, -5.0, 0.0))
    head = HeadWeights(coef, (0.0,) * n, 0.0, state_weight=1.0, state_mean=(0.0, 0.0))
    engine, sink = StatefulEngine(), Sink()
    service = LabelingService(engine, embedder=WordEmbedder())
    texts = ["win a prize", "see you at lunch"]
    preds = service.predict_control(control, ControlRecipe(head=head), texts, keep=sink)
    assert [p.chosen for p, _ in preds] == [(control.labels[0],), (control.labels[1],)]
    assert engine.with_state == 2  # the tasks; the content-free calibration reads no state
    assert {k: v[2].tolist() for k, v in sink.entries.items()} == {b"win a prize": [1.0, 0.0],
                                                                    b"see you at lunch": [-1.0, 0.0]}
    engine.with_state, sink.entries = 0, {}
    service.predict_control(control, ControlRecipe(), texts)  # nothing kept, nothing read: no state
    assert engine.with_state == 0
    service.predict_control(control, ControlRecipe(), texts, keep=sink)  # kept for a job's head to learn from
    assert engine.with_state == 2 and all(v[2] is not None for v in sink.entries.values())
    with pytest.raises(BadRequest) as err:
        LabelingService(ScriptedEngine()).predict_control(control, ControlRecipe(head=head), texts)
    assert err.value.field == "model_version"
