import pytest

from backend.errors import LabelConfigError
from backend.labeling.label_config import parse_label_config
from tests.conftest import load_fixture

SINGLE = load_fixture("predict-choices-single.json")["label_config"]
MULTI = load_fixture("predict-choices-multi.json")["label_config"]
NER = load_fixture("predict-labels-ner.json")["label_config"]


def test_single_choice_from_captured_config():
    task = parse_label_config(SINGLE)
    (control,) = task.controls
    assert (control.name, control.to_name, control.field) == ("sentiment", "text", "text")
    assert control.labels == ("Positive", "Negative", "Neutral")
    assert control.multiple is False


def test_multiple_choice_from_captured_config():
    (control,) = parse_label_config(MULTI).controls
    assert control.multiple is True
    assert len(control.labels) >= 2


def test_several_controls_bound_to_their_own_text_fields():
    config = (
        '<View><Text name="title" value="$title"/><Text name="body" value="$body"/>'
        '<Choices name="topic" toName="title"><Choice value="A"/><Choice value="B"/></Choices>'
        '<Choices name="tone" toName="body" choice="multiple"><Choice value="x"/><Choice value="y"/></Choices>'
        '<Image name="img" value="$image"/>'
        '<Choices name="pic" toName="img"><Choice value="cat"/><Choice value="dog"/></Choices></View>'
    )
    task = parse_label_config(config)
    assert [(c.name, c.field, c.multiple) for c in task.controls] == [("topic", "title", False), ("tone", "body", True)]
    assert task.fields == ("title", "body")
    assert [s.name for s in task.skipped] == ["pic"]
    assert "not to a <Text> object" in task.skipped_messages()[0]


def test_ner_only_config_is_rejected_naming_the_control():
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(NER)
    assert err.value.field == "label_config"
    assert "only <Choices> controls" in err.value.message


@pytest.mark.parametrize("config", ["", "<View><Text", '<View><Choices name="c" toName="missing"/></View>'])
def test_invalid_config_is_a_label_config_error(config):
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(config)
    assert err.value.status == 400
