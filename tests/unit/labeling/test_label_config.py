import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.errors import LabelConfigError
from backend.labeling.label_config import parse_label_config
from tests.conftest import load_fixture
from tests.strategies import PROPERTY_SETTINGS, characters, label_configs

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


IMAGE_ONLY = ('<View><Image name="img" value="$image"/>'
              '<RectangleLabels name="box" toName="img"><Label value="cat"/></RectangleLabels></View>')


def test_ner_only_config_is_served_as_spans():
    task = parse_label_config(NER)
    assert not task.controls and [(c.name, c.labels) for c in task.span_controls] == [("label", ("PER", "ORG", "LOC"))]


def test_config_with_nothing_servable_is_rejected_naming_the_control():
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(IMAGE_ONLY)
    assert err.value.field == "label_config"
    assert "box: only <Choices>, <Rating>, <Taxonomy> and <Labels> controls" in err.value.message


@pytest.mark.parametrize("config", ["", "<View><Text", '<View><Choices name="c" toName="missing"/></View>'])
def test_invalid_config_is_a_label_config_error(config):
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(config)
    assert err.value.status == 400


TEXT = '<Text name="text" value="$text"/>'
TWO = '<Choice value="x"/><Choice value="y"/>'


@pytest.mark.parametrize(
    "config, says",
    [
        # a Choices bound to another control: the SDK validates only that the name exists
        (f'<View>{TEXT}<Choices name="a" toName="text">{TWO}</Choices><Choices name="b" toName="a">{TWO}</Choices></View>',
         "toName='a', which names a control"),
        (f'<View><Choices name="b" toName="b">{TWO}</Choices></View>', "toName='b', which names a control"),
        (f'<View>{TEXT}<Choices toName="text">{TWO}</Choices></View>', "invalid label config"),  # no name
        (f'<View>{TEXT}<Choices name="a">{TWO}</Choices></View>', "invalid label config"),  # no toName
        (f'<View>{TEXT}<Choices name="a" toName="text"><Choice/><Choice/></Choices></View>', "invalid label config"),
        ("<View><", "invalid label config"),
        ("<View>\x00</View>", "invalid label config"),
        ("<View>" * 300 + "</View>" * 300, "invalid label config"),
        (f'<View>{TEXT}<Choices name="a" toName="text"><Choice value="x\ud800"/></Choices></View>', "lone surrogate"),
        (None, "must be a string"),
        (["<View/>"], "must be a string"),  # unhashable: used to fail inside the cache
    ],
)
def test_malformed_config_is_a_label_config_error_naming_the_problem(config, says):
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(config)
    assert err.value.field == "label_config" and says in err.value.message


@settings(**PROPERTY_SETTINGS)
@given(st.one_of(st.text(characters, max_size=200), label_configs()))
def test_any_string_parses_to_a_task_or_a_label_config_error(config):
    """Label Studio passes configs through verbatim: whatever it sends, /setup and /predict answer
    a LabelTask or a 400, never another exception (which would be a 500)."""
    try:
        task = parse_label_config(config)
    except LabelConfigError as exc:
        assert exc.field == "label_config" and exc.message
        return
    assert task.controls
    for control in task.controls:
        assert control.name and control.field and control.to_name
        assert len(control.labels) >= (1 if control.multiple else 2)
        assert len(set(control.labels)) == len(control.labels)


def test_a_rating_is_a_single_choice_over_its_stars():
    task = parse_label_config(f'<View>{TEXT}<Rating name="stars" toName="text" maxRating="3"/>'
                              f'<Rating name="overall" toName="text"/></View>')
    stars, overall = task.controls
    assert (stars.kind, stars.labels, stars.multiple, stars.field) == ("rating", ("1", "2", "3"), False, "text")
    assert overall.labels == ("1", "2", "3", "4", "5")  # Label Studio's default maxRating


@pytest.mark.parametrize("max_rating", ["1", "27", "x", "2.5", "\u0663"])
def test_a_rating_that_cannot_be_served_is_skipped_and_named(max_rating):
    task = parse_label_config(f'<View>{TEXT}<Rating name="stars" toName="text" maxRating="{max_rating}"/>'
                              f'<Choices name="c" toName="text">{TWO}</Choices></View>')
    assert [c.name for c in task.controls] == ["c"]
    assert "maxRating" in task.skipped_messages()[0]


TREE = ('<Choice value="Europe"><Choice value="France"/><Choice value="Spain" alias="ES"/></Choice>'
        '<Choice value="Asia"><Choice value="Japan"/></Choice>')


def test_a_taxonomy_is_a_single_choice_over_its_paths_stored_with_aliases():
    (every,) = parse_label_config(f'<View>{TEXT}<Taxonomy name="geo" toName="text">{TREE}</Taxonomy></View>').controls
    assert (every.kind, every.multiple) == ("taxonomy", False)
    assert every.labels == ("Europe", "Europe / France", "Europe / Spain", "Asia", "Asia / Japan")
    assert every.paths == (("Europe",), ("Europe", "France"), ("Europe", "ES"), ("Asia",), ("Asia", "Japan"))
    (leaves,) = parse_label_config(f'<View>{TEXT}<Taxonomy name="geo" toName="text" leafsOnly="true">{TREE}'
                                   f'</Taxonomy></View>').controls
    assert leaves.labels == ("Europe / France", "Europe / Spain", "Asia / Japan")


@pytest.mark.parametrize("tree", ['<Choice value="Only"/>', '<Choice value="a / b"/><Choice value="a"><Choice value="b"/></Choice>'])
def test_a_taxonomy_with_one_path_or_paths_that_read_alike_is_skipped(tree):
    task = parse_label_config(f'<View>{TEXT}<Taxonomy name="geo" toName="text">{tree}</Taxonomy>'
                              f'<Choices name="c" toName="text">{TWO}</Choices></View>')
    assert [c.name for c in task.controls] == ["c"] and "distinct paths" in task.skipped_messages()[0]


def test_a_config_with_only_a_text_area_says_it_only_receives_rationales():
    with pytest.raises(LabelConfigError) as err:
        parse_label_config(f'<View>{TEXT}<TextArea name="notes" toName="text"/></View>')
    assert "notes: a <TextArea> only receives rationales" in err.value.message
