"""`candidates --test`: test labels are mapped by name onto the control's labels."""
import numpy as np
import pytest

from backend.errors import DatasetError
from backend.evaluation.datasets import Dataset
from backend.evaluation.holdout import gold_indices as gold_of
from backend.labeling.label_config import parse_label_config

CONTROL = parse_label_config(Dataset("t", ("ham", "spam"), ("a",), (0,)).label_config()).controls[0]


def test_labels_are_matched_by_name_not_by_position():
    test = Dataset("t", ("spam", "ham"), ("x", "y", "z"), (0, 1, 0))
    np.testing.assert_array_equal(gold_of(CONTROL, test), [1, 0, 1])


def test_a_label_the_ground_truth_never_had_is_a_named_error():
    test = Dataset("t", ("ham", "phishing"), ("x",), (1,))
    with pytest.raises(DatasetError, match="phishing"):
        gold_of(CONTROL, test)
