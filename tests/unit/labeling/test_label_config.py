import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.errors import LabelConfigError
from backend.labeling.label_config import config_hash, parse_label_config
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


# The lineage hash: what a version's recipes depend on, not how the config looks.
CHOICES = ('<Choices name="sentiment" toName="text" choice="single">'
           '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices>')
LINEAGE_BASE = f'<View>{TEXT}{CHOICES}<TextArea name="why" toName="text"/></View>'
COSMETIC = {
    "whitespace": ('\n<View>\n  <Text name="text"   value="$text" />\n'
                   '  <Choices name="sentiment" toName="text" choice="single">\n'
                   '    <Choice value="Positive"/>\n    <Choice value="Negative"/>\n    <Choice value="Neutral"/>\n'
                   '  </Choices>\n  <TextArea name="why" toName="text"/>\n</View>\n'),
    "header": f'<View><Header value="How does the review feel?"/>{TEXT}{CHOICES}<TextArea name="why" toName="text"/></View>',
    "style wrapper": (f'<View>{TEXT}<View style="display: flex; padding: 8px">{CHOICES}</View>'
                      f'<TextArea name="why" toName="text"/></View>'),
    "attribute order": ('<View><Text value="$text" name="text"/><Choices choice="single" toName="text" name="sentiment">'
                        '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices>'
                        '<TextArea toName="text" name="why"/></View>'),
    "comment": f'<View><!-- the tone of the review -->{TEXT}{CHOICES}<TextArea name="why" toName="text"/></View>',
    "hints and layout": ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text" choice="single"'
                         ' showInline="true"><Choice value="Positive" hint="glad" hotkey="p"/><Choice value="Negative"/>'
                         '<Choice value="Neutral" style="color: grey"/></Choices><TextArea name="why" toName="text"/></View>'),
    "controls moved": f'<View>{TEXT}<TextArea name="why" toName="text"/>{CHOICES}</View>',
}
CHANGED = {
    "label added": LINEAGE_BASE.replace('<Choice value="Neutral"/>', '<Choice value="Neutral"/><Choice value="Mixed"/>'),
    "label renamed": LINEAGE_BASE.replace('"Neutral"', '"Neither"'),
    "labels reordered": LINEAGE_BASE.replace('<Choice value="Positive"/><Choice value="Negative"/>',
                                             '<Choice value="Negative"/><Choice value="Positive"/>'),
    "control renamed": LINEAGE_BASE.replace('name="sentiment"', 'name="tone"'),
    "other field": LINEAGE_BASE.replace('value="$text"', 'value="$review"'),
    "multiple choice": LINEAGE_BASE.replace('choice="single"', 'choice="multiple"'),
    "new control": LINEAGE_BASE.replace("</View>", f'<Choices name="topic" toName="text">{TWO}</Choices></View>'),
    "rationale area renamed": LINEAGE_BASE.replace('name="why"', 'name="reason"'),
    "instruction area": LINEAGE_BASE.replace('name="why"', 'name="prompt"'),
}


@pytest.mark.parametrize("edit", COSMETIC)
def test_a_cosmetic_edit_keeps_the_lineage(edit):
    base, edited = parse_label_config(LINEAGE_BASE), parse_label_config(COSMETIC[edit])
    assert edited.config_hash == base.config_hash
    assert edited.legacy_hash != base.legacy_hash  # what used to start a new lineage


@pytest.mark.parametrize("edit", CHANGED)
def test_an_edit_of_what_is_served_starts_a_new_lineage(edit):
    assert parse_label_config(CHANGED[edit]).config_hash != parse_label_config(LINEAGE_BASE).config_hash


PINNED_LINEAGE = "fe19e661910b"  # SINGLE's lineage: the hash its versions are stored under


def test_the_lineage_hashes_are_pinned():
    """Versions are stored under these hashes: a change of either formula would orphan them."""
    task = parse_label_config(SINGLE)
    assert task.legacy_hash == hashlib.sha256(SINGLE.strip().encode("utf-8")).hexdigest()[:12]
    assert task.config_hash == PINNED_LINEAGE
    assert config_hash(SINGLE) == task.config_hash


def test_a_rating_scale_or_taxonomy_alias_starts_a_new_lineage():
    def lineage(body: str) -> str:
        return config_hash(f"<View>{TEXT}{body}</View>")

    assert lineage('<Rating name="r" toName="text" maxRating="5"/>') != lineage('<Rating name="r" toName="text" maxRating="4"/>')
    assert lineage('<Rating name="r" toName="text" maxRating="5"/>') == lineage('<Rating name="r" toName="text" icon="heart"/>')
    tree = f'<Taxonomy name="geo" toName="text">{TREE}</Taxonomy>'
    assert lineage(tree) != lineage(tree.replace('alias="ES"', 'alias="SP"'))


def test_span_labels_keep_their_lineage_through_a_color_change():
    recolored = NER.replace("<Label ", '<Label background="#123456" ', 1)
    assert recolored != NER and config_hash(recolored) == config_hash(NER)
    assert config_hash(NER.replace('"ORG"', '"COMPANY"')) != config_hash(NER)
