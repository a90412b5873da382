"""When a template choice is worth a version of its own (pure logic)."""
from backend.labeling.calibration import Calibrator
from backend.refinement.selection.template_choice import (BIAS_TOLERANCE, MIN_TEXTS_PER_LABEL, TemplateChoice,
                                                         batch_ready)


def _choice(template: str, incumbent: str, bias: tuple[float, ...] | None) -> TemplateChoice:
    calibrator = Calibrator(bias, 1.0, "batch") if bias is not None else None
    return TemplateChoice(template, {}, 128, 1.0, template, incumbent, 1.0, calibrator)


def test_a_choice_moves_the_served_version_when_its_template_or_its_batch_bias_does():
    served = Calibrator((0.3, -0.3), 1.0, "batch")
    assert _choice("best", "default", (0.3, -0.3)).moved(served)  # a new template
    assert _choice("best", "best", (0.3, -0.3)).moved(None)  # version 0 served content-free only
    assert not _choice("best", "best", (0.3 + BIAS_TOLERANCE / 2, -0.3)).moved(served)  # about the same
    assert _choice("best", "best", (0.3 + 2 * BIAS_TOLERANCE, -0.3)).moved(served)  # the bias moved
    assert _choice("best", "best", None).moved(served)  # batch calibration turned off since
    assert not _choice("best", "best", None).moved(None)


def test_batch_calibration_waits_for_several_texts_a_label():
    assert batch_ready(32, 2) and batch_ready(32, 4) and not batch_ready(32, 5)
    assert not batch_ready(256, 151)  # an intent set keeps content-free calibration alone
    assert batch_ready(MIN_TEXTS_PER_LABEL * 6, 6) and not batch_ready(MIN_TEXTS_PER_LABEL * 6 - 1, 6)
