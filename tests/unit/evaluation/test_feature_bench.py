"""The pure parts of feature-bench: block normalisation, pooling, the grid and the leave-one-set-out choice."""
import numpy as np
import pytest

from backend.evaluation.datasets import Dataset
from backend.evaluation.feature_bench import (Setting, answer_prompt, concat_blocks, features, gemma_block, l2_rows,
                                              lodo_choice, lodo_rows, pool_tokens, setting_grid)
from backend.refinement.candidates.embedding_head import REGULARISATION_C


def test_rows_become_unit_length_and_a_zero_row_stays_zero():
    out = l2_rows(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])


def test_concat_normalises_each_block_and_scales_the_second():
    out = concat_blocks(np.array([[3.0, 4.0]]), np.array([[10.0, 0.0, 0.0]]), weight=2.0)
    assert np.allclose(out, [[0.6, 0.8, 2.0, 0.0, 0.0]])
    assert np.allclose(np.linalg.norm(out[:, :2], axis=1), 1.0)


def test_centring_uses_the_train_items_only():
    train, test = np.array([[1.0, 10.0], [3.0, 10.0]]), np.array([[2.0, 11.0]])
    g_train, g_test = gemma_block(train, test, centre=True)
    assert np.allclose(g_train, [[-1.0, 0.0], [1.0, 0.0]])  # the common direction (10) is gone
    assert np.allclose(g_test, [[0.0, 1.0]])
    plain_train, _ = gemma_block(train, test, centre=False)
    assert np.allclose(plain_train, l2_rows(train))


def test_mean_and_last_pooling():
    pooled = pool_tokens(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]))
    assert np.allclose(pooled["mean"], [3.0, 5.0])
    assert np.allclose(pooled["last"], [5.0, 9.0])


def test_grid_starts_with_minilm_and_holds_every_combination():
    grid = setting_grid([0.5, 1.0], [1.0, 10.0])
    assert grid[0] == Setting("minilm", 1.0)
    assert len(grid) == 2 + 2 * 2 * 2 + 2 * 2 * 2 * 2
    assert len(set(grid)) == len(grid)
    assert {s.features for s in grid} == {"minilm", "gemma", "concat"}


A, B, C = Setting("minilm", 1.0), Setting("gemma", 1.0, "mean"), Setting("concat", 1.0, "last", False, 2.0)


def test_lodo_never_looks_at_the_held_out_set():
    scores = {"x": {A: 0.0, B: 0.0, C: 1.0},  # C is best on x only
              "y": {A: 0.9, B: 0.5, C: 0.1},
              "z": {A: 0.7, B: 0.8, C: 0.2}}
    assert lodo_choice(scores, "x", [A, B, C]) == A  # means over y, z: A 0.8, B 0.65, C 0.15
    assert lodo_choice(scores, "y", [A, B, C]) == C  # over x, z: A 0.35, B 0.4, C 0.6
    scores["x"][C] = -5.0  # changing the held-out set's scores changes nothing for it
    assert lodo_choice(scores, "x", [A, B, C]) == A


def test_lodo_ties_go_to_the_earliest_candidate_and_one_set_alone_is_refused():
    scores = {"x": {A: 0.1, B: 0.1}, "y": {A: 0.5, B: 0.5}}
    assert lodo_choice(scores, "x", [A, B]) == A
    assert lodo_choice(scores, "x", [B, A]) == B
    with pytest.raises(ValueError):
        lodo_choice({"x": {A: 1.0}}, "x", [A])


def test_features_of_each_family():
    rng = np.random.default_rng(1)
    mini = (l2_rows(rng.normal(size=(4, 3))), l2_rows(rng.normal(size=(2, 3))))
    gem = {p: (rng.normal(size=(4, 6)), rng.normal(size=(2, 6))) for p in ("mean", "last")}
    assert features(Setting("minilm", 1.0), mini, gem) is mini
    g_train, g_test = features(Setting("gemma", 1.0, "last"), mini, gem)
    assert np.allclose(g_train, l2_rows(gem["last"][0])) and g_test.shape == (2, 6)
    c_train, c_test = features(Setting("concat", 1.0, "mean", True, 0.5), mini, gem)
    assert c_train.shape == (4, 9) and c_test.shape == (2, 9)
    assert np.allclose(np.linalg.norm(c_train[:, 3:], axis=1), 0.5)


def test_lodo_rows_report_the_shipped_head_and_the_choice_made_elsewhere():
    grid = setting_grid([1.0], [REGULARISATION_C])
    shipped = Setting("minilm", REGULARISATION_C)
    concat = [s for s in grid if s.features == "concat"]

    def scored(best: Setting) -> dict:
        return {s: {"macro_f1": 0.9 if s == best else 0.5, "accuracy": 0.5} for s in grid}

    results = {"x": {25: scored(concat[0])}, "y": {25: scored(concat[1])}, "z": {25: scored(concat[1])}}
    rows = {r["set"]: r for r in lodo_rows(results, grid)}
    assert rows["x"]["concat_lodo"]["setting"] == concat[1].label  # y and z prefer concat[1]
    assert rows["x"]["concat_lodo"]["macro_f1"] == 0.5 and rows["x"]["concat_oracle"]["macro_f1"] == 0.9
    assert rows["x"]["minilm"]["setting"] == shipped.label
    assert rows["y"]["concat_lodo"]["setting"] == concat[0].label  # x and z tie 0.7: the earliest
    assert rows["y"]["gain"] == 0.0


def test_prompt_states_read_the_text_as_version_0_shows_it_up_to_the_answer():
    data = Dataset("x", ("spam", "ham"), ("a", "b"), (0, 1))
    frame = answer_prompt(data)
    framed = frame("Win  a\tprize now")
    assert framed.endswith("Text: Win a prize now\nLabel:")  # cleaned as the prompt cleans it
    assert "spam" in framed and "ham" in framed  # the instruction names the labels
    assert frame("other").split("Text: ")[0] == framed.split("Text: ")[0]  # one shared prefix
