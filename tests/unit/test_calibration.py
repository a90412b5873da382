import numpy as np

from backend.labeling.calibration import Calibrator, softmax


def test_contextual_calibration_makes_the_content_free_input_uniform():
    cf = np.log(np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]]))
    cal = Calibrator.contextual(cf, multiple=False)
    mean_cf = np.log(softmax(cf).mean(axis=0))
    np.testing.assert_allclose(cal.apply(mean_cf, multiple=False), [1 / 3] * 3, atol=1e-9)


def test_contextual_calibration_moves_the_decision_towards_the_suppressed_label():
    cf = np.log(np.array([[0.9, 0.1]]))
    cal = Calibrator.contextual(cf, multiple=False)
    item = np.log(np.array([0.8, 0.2]))  # less "first" than a content-free input → second wins
    probs = cal.apply(item, multiple=False)
    assert probs.argmax() == 1
    assert abs(probs.sum() - 1) < 1e-9


def test_multi_label_contextual_calibration_centres_each_label_at_one_half():
    cf = np.array([[2.0, -1.0], [1.0, -3.0]])
    cal = Calibrator.contextual(cf, multiple=True)
    np.testing.assert_allclose(cal.apply(cf.mean(axis=0), multiple=True), [0.5, 0.5])


def test_identity_keeps_raw_probabilities_and_serialises():
    cal = Calibrator.identity(2)
    np.testing.assert_allclose(cal.apply(np.log([0.25, 0.75]), multiple=False), [0.25, 0.75])
    assert cal.to_dict() == {"method": "identity", "bias": [0.0, 0.0], "temperature": 1.0}
