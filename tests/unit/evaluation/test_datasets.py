"""Data sets loaded from JSONL: label lists make a multiple-choice set, span annotations are refused."""
import json

import numpy as np
import pytest

from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from tests.conftest import DATASETS


def test_a_jsonl_with_label_lists_loads_as_a_multiple_choice_set(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    rows = [{"text": "one", "labels": ["a", "c"]}, {"text": "two", "labels": ["b"]}, {"text": "none", "labels": []}]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = load_dataset(tmp_path / "test.jsonl")
    assert data.multiple and data.texts == ("one", "two")
    np.testing.assert_array_equal(data.gold_matrix(), [[1, 0, 1], [0, 1, 0]])
    (control,) = parse_label_config(data.label_config()).controls
    assert control.multiple and control.labels == ("a", "b", "c")


def test_a_span_data_set_is_refused_by_name():
    from backend.errors import DatasetError

    with pytest.raises(DatasetError, match="span annotations"):
        load_dataset(DATASETS / "wnut17" / "test.jsonl")


def test_a_seed_draws_other_items_before_the_limit_and_the_same_ones_again(tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(40)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    first = load_dataset(tmp_path / "train.jsonl", limit=10)
    drawn = load_dataset(tmp_path / "train.jsonl", limit=10, seed=1)
    assert first.texts == tuple(f"t{i}" for i in range(10))
    assert drawn.texts != first.texts and set(drawn.texts) <= {r["text"] for r in rows}
    assert load_dataset(tmp_path / "train.jsonl", limit=10, seed=1) == drawn
    assert all(drawn.labels[g] == "ab"[int(t[1:]) % 2] for t, g in zip(drawn.texts, drawn.gold))
