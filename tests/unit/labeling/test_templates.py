"""Which instructions were chosen without labels (pure logic)."""
from dataclasses import replace

from backend.labeling.prompt import Demo, PromptVersion
from backend.labeling.templates import TEMPLATES, template_prompt, template_wording
from tests.unit.helpers import sentiment_control


def test_the_built_in_and_every_template_wording_are_fixed_and_a_rewrite_is_not():
    control = sentiment_control()
    assert template_wording(PromptVersion(), control)
    for name in TEMPLATES:
        prompt = template_prompt(name, control)
        # demonstrations added on top of a template keep its wording
        assert template_wording(replace(prompt, name="8-shot", demos=(Demo("nice", ("good",)),)), control)
    assert not template_wording(PromptVersion(name="rewrite", instructions="Say good when it is nice."), control)
    # a template's words for other labels are not this control's template
    other = template_prompt("answer", replace(control, labels=("yes", "no")))
    assert not template_wording(other, control)
