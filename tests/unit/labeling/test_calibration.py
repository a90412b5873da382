import numpy as np
import pytest

from backend.labeling.calibration import Calibrator, fit_calibrator, fit_multilabel_calibrator, sigmoid, softmax
from backend.labeling.recipe import ControlRecipe
from backend.metrics.multi_label import log_loss_per_item


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


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_batch_calibration_divides_each_answer_by_the_mean_answer_on_the_texts(temperature):
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1, (40, 3)) + np.array([1.5, 0.0, -1.0])  # the model leans to the first label
    served = Calibrator(bias=(0.2, -0.1, -0.1), temperature=temperature, method="contextual")
    answers = served.apply(logits, multiple=False)
    batched = served.batched(answers)
    divided = answers / answers.mean(axis=0)
    np.testing.assert_allclose(batched.apply(logits, multiple=False), divided / divided.sum(axis=1, keepdims=True))
    uniform = np.full(3, 1 / 3)
    assert (np.abs(batched.apply(logits, multiple=False).mean(axis=0) - uniform).max()
            < np.abs(answers.mean(axis=0) - uniform).max() / 2)
    assert batched.method == "batch" and batched.temperature == temperature
    assert abs(sum(batched.bias)) < 1e-9  # centred: only the differences between labels count
    leaning = served.apply(logits, multiple=False).argmax(axis=1)
    assert (batched.apply(logits, multiple=False).argmax(axis=1) == 0).sum() < (leaning == 0).sum()
    stored = ControlRecipe.from_dict(ControlRecipe(calibrator=batched).to_dict()).calibrator
    assert stored == batched  # a version keeps it as served


def test_identity_keeps_raw_probabilities_and_serialises():
    cal = Calibrator.identity(2)
    np.testing.assert_allclose(cal.apply(np.log([0.25, 0.75]), multiple=False), [0.25, 0.75])
    assert cal.to_dict() == {"method": "identity", "bias": [0.0, 0.0], "temperature": 1.0}


def test_a_fit_around_the_content_free_bias_keeps_it_for_labels_without_examples():
    """Many labels, few items: most labels have no example. Shrunk towards 0 their bias falls
    back to the raw logits' label preference; shrunk towards the content-free bias it keeps it."""
    from backend.labeling.calibration import fit_calibrator

    rng = np.random.default_rng(0)
    n_labels, n_items = 60, 40
    preference = rng.normal(0.0, 3.0, n_labels)  # the raw model's taste for some label names

    def raw_logits(gold):
        signal = np.zeros((len(gold), n_labels))
        signal[np.arange(len(gold)), gold] = 4.0
        return signal + preference + rng.normal(0.0, 1.0, (len(gold), n_labels))

    train_gold, test_gold = rng.integers(0, n_labels, n_items), rng.integers(0, n_labels, 2000)
    train, test = raw_logits(train_gold), raw_logits(test_gold)
    content_free = Calibrator(bias=tuple(-preference), method="contextual")

    def accuracy(calibrator):
        return float((calibrator.apply(test, False).argmax(1) == test_gold).mean())

    around_zero = fit_calibrator(train, train_gold)
    around_prior = fit_calibrator(train, train_gold, prior=content_free)
    assert accuracy(around_prior) > accuracy(around_zero) + 0.2
    assert accuracy(around_prior) >= accuracy(content_free) - 0.02
    assert around_prior.method == "fitted"


def test_a_fit_around_a_prior_is_the_same_affine_map_as_served():
    """The prior's temperature and bias are folded into the stored calibrator: applying it to the
    raw logits gives what the fit saw."""
    from backend.labeling.calibration import fit_calibrator

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 300)
    logits = rng.normal(0.0, 1.0, (300, 3))
    logits[np.arange(300), gold] += 2.0
    prior = Calibrator(bias=(0.5, -0.2, -0.3), temperature=2.0, method="contextual")
    direct = fit_calibrator(logits / 2.0 + np.array(prior.bias), gold, l2=0.0)
    folded = fit_calibrator(logits, gold, l2=0.0, prior=prior)
    assert np.allclose(folded.apply(logits, False), direct.apply(logits / 2.0 + np.array(prior.bias), False), atol=1e-4)


def test_fitted_calibration_removes_a_bias_and_lowers_log_loss():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)
    true_logits = np.eye(3)[gold] * 2.0 + rng.normal(0, 1.0, (600, 3))
    biased = true_logits * 3.0 + np.array([2.0, 0.0, -2.0])  # overconfident and biased to label 0
    cal = fit_calibrator(biased, gold)

    def nll(p):
        return -np.log(p[np.arange(len(gold)), gold]).mean()

    assert nll(cal.apply(biased, False)) < nll(softmax(biased)) - 0.1
    assert cal.temperature > 1.5
    assert cal.bias[0] < cal.bias[2]


def _biased_logits(n, seed=0):
    """True log-odds ℓ (gold drawn from σ(ℓ)); the model says ℓ + 3 for label 0 (over-called) and
    3ℓ − 2 for label 1 (over-confident, under-called)."""
    rng = np.random.default_rng(seed)
    true = rng.normal([-1.5, 0.0], 2.0, (n, 2))
    gold = (rng.random((n, 2)) < sigmoid(true)).astype(int)
    return true * [1.0, 3.0] + [3.0, -2.0], gold


def test_per_label_calibration_removes_each_labels_bias_and_lowers_log_loss():
    logits, gold = _biased_logits(600)
    prior = Calibrator((0.0, 0.0), method="contextual")
    cal = fit_multilabel_calibrator(logits, gold, prior)
    assert cal.method == "fitted-per-label"
    assert cal.bias[0] < -2.0 and cal.bias[1] > 0.3  # pushes label 0 down, label 1 up
    assert cal.temperature[1] > 2.0 > 1.5 > cal.temperature[0]  # softens only the over-confident label
    assert log_loss_per_item(gold, cal.apply(logits, True)).mean() < log_loss_per_item(gold, sigmoid(logits)).mean() - 0.3


def test_per_label_calibration_stays_near_the_prior_with_few_items():
    logits, gold = _biased_logits(600)
    prior = Calibrator((0.5, -0.5), method="contextual")
    few = fit_multilabel_calibrator(logits[:4], gold[:4], prior)
    many = fit_multilabel_calibrator(logits, gold, prior)
    shift = lambda cal: np.abs(np.array(cal.bias) - prior.bias)  # noqa: E731
    assert (shift(few) < shift(many)).all()
    assert shift(few).max() < 1.5


@pytest.mark.parametrize("temperature", [1.7, (0.5, 2.0, 1.0)])
def test_a_shifted_calibrator_is_the_calibrator_applied_to_shifted_logits(temperature):
    calibrator = Calibrator((0.3, -0.1, -0.2), temperature, "fitted")
    z, delta = np.array([1.0, -0.5, 0.2]), np.array([0.4, -1.2, 0.8])
    for multiple in (False, True):
        assert np.allclose(calibrator.shifted(delta).apply(z, multiple), calibrator.apply(z + delta, multiple))
    assert calibrator.shifted(delta).method == "fitted"
