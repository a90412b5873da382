"""What the status page writes in a version's metrics cell."""
from backend.api.ui_page import metric_cells


def test_a_version_learnt_from_labels_shows_its_figures():
    cells = metric_cells({"sentiment": {"macro_f1": 0.8123, "accuracy": 0.9, "ece": 0.041, "n": 50}})
    assert cells == [{"control": "sentiment", "values": [("macro-F1", "0.812"), ("accuracy", "0.900"),
                                                         ("ECE", "0.041")]}]


def test_a_template_version_shows_the_template_and_its_mutual_information():
    choice = {"template": "best", "scores": {"default": 0.066, "best": 0.094}, "unlabelled_texts": 40}
    cells = metric_cells({"sentiment": {"template": choice}})
    assert cells == [{"control": "sentiment", "values": [("template", "best"),
                                                         ("MI on 40 unlabelled texts", "0.094"),
                                                         ("built-in", "0.066")]}]
