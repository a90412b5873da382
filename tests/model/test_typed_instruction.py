"""An instruction the annotator types in the editor steers the real embedded model's answer for
that request, which stays one of the config's labels with probabilities over them."""
import pytest

from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService, extract_texts
from backend.labelstudio.payloads import editor_context

pytestmark = pytest.mark.model

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" editable="true"/>
  <Choices name="sentiment" toName="text">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
</View>"""


def test_a_typed_instruction_changes_the_answer_and_it_stays_in_the_label_set(engine):
    label_task = parse_label_config(CONFIG)
    items = extract_texts([{"data": {"text": "Oh great, the train is late again. Just what I needed."}}], label_task, 10_000)
    service = LabelingService(engine)
    (plain,) = service.predict(items, label_task, ModelVersion("t.v0"))
    typed = [{"from_name": "prompt", "to_name": "text", "type": "textarea",
              "value": {"text": ["Sarcastic praise is Negative."]}}]
    context = editor_context(label_task, {"params": {"context": {"result": typed}}})
    (steered,) = service.predict(items, label_task, ModelVersion("t.v0"), context)
    for prediction in (plain, steered):
        (region,) = prediction["result"]  # nothing written back into the annotator's prompt box
        assert region["from_name"] == "sentiment" and region["value"]["choices"][0] in {"Positive", "Negative", "Neutral"}
        assert sum(region["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    before, after = plain["result"][0]["probabilities"], steered["result"][0]["probabilities"]
    assert max(abs(before[k] - after[k]) for k in before) > 0.01, (before, after)
