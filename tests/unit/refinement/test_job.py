"""The refinement job's pure parts: the ground truth a control learns from, each control's share of
the job's time, when a refreshed current version is published."""


def test_usable_gold_gives_indices_for_single_choice_and_a_matrix_for_multiple_choice():
    from backend.labeling.label_config import ChoiceControl
    from backend.refinement.job import usable_gold
    from backend.store.ground_truth import GoldItem

    gold = [GoldItem(1, {"text": "a"}, {"one": ["x"], "many": ["x", "z"]}, 11, "2026-01-02"),
            GoldItem(2, {"text": "b"}, {"one": ["x", "y"], "many": ["y"]}, 12, "2026-01-01"),
            GoldItem(3, {"text": "c"}, {"many": ["z"]}, 13, "2026-01-03")]
    single = ChoiceControl("one", "text", "text", ("x", "y"), False)
    items, targets = usable_gold(single, gold, 300)
    assert [g.task_id for g in items] == [1] and targets.tolist() == [0]  # two labels on one choice: unusable
    multiple = ChoiceControl("many", "text", "text", ("x", "y", "z"), True)
    items, targets = usable_gold(multiple, gold, 2)
    assert [g.task_id for g in items] == [1, 3]  # the newest two, oldest first
    assert targets.tolist() == [[1, 0, 1], [0, 0, 1]]


def test_each_control_left_gets_an_equal_share_of_the_job_time_left():
    from backend.refinement.job import control_deadline

    assert control_deadline(now=0.0, deadline=600.0, controls_left=2) == 300.0
    # the first control used only 100 s of its 300: the last one gets all that is left
    assert control_deadline(now=100.0, deadline=600.0, controls_left=1) == 600.0
    # the first one overran: the next still has its cheap plans, with no time for LLM passes
    assert control_deadline(now=700.0, deadline=600.0, controls_left=1) == 700.0


def test_a_refresh_is_published_only_once_the_ground_truth_has_doubled():
    from backend.refinement.job import refresh_due

    assert refresh_due(100, 50) and refresh_due(400, 50)
    assert not refresh_due(99, 50)  # each job would otherwise publish a new model_version
    assert not refresh_due(100, 0)  # version 0 learnt nothing from ground truth


def test_the_tuned_stage_may_refresh_only_a_current_version_on_a_tuned_body_whose_refresh_is_due():
    """Only the tuned stage can refit a fine-tuned body (current_refit.tuned_head): the job tells it
    when that refresh is due, and for no other version."""
    from types import SimpleNamespace

    from backend.labeling.head import HeadWeights
    from backend.labeling.label_config import ChoiceControl
    from backend.labeling.recipe import ControlRecipe
    from backend.refinement.job import tuned_stage
    from backend.settings import Settings

    class Search:
        def __init__(self, embedder):
            head = HeadWeights(((0.0,),), (0.0,), 0.0, embedder=embedder)
            self.job = SimpleNamespace(tuning=object(), current=ControlRecipe(head=head))
            self.asked = None

        def tuned_stage(self, deadline, refreshed=None, *, refresh_tuned=False):
            self.asked = refresh_tuned  # a late plan no worse than the version it refreshes, when asked
            return SimpleNamespace(results=[], best=SimpleNamespace(name="late"), accepted=refresh_tuned,
                                   refreshes_tuned=refresh_tuned, p_value=0.3, table=[], skipped=[])

    control = ChoiceControl("label", "text", "text", ("x", "y"), False)
    for embedder, due, asked in (("tuned:abc", True, True), ("tuned:abc", False, False), ("minilm", True, False)):
        search, decisions = Search(embedder), {"label": {}}
        won = tuned_stage(Settings.from_env({}), None, 1, "config", [(control, search)], decisions, {}, due)
        assert search.asked is asked, (embedder, due)
        assert decisions["label"]["tuned"]["refresh"] is asked and list(won) == (["label"] if asked else [])


def test_a_single_choice_control_whose_labels_are_all_one_is_not_learnt_from_yet():
    """Ten texts all labelled ham: every fitted candidate would learn to say ham and pass any test
    against version 0 on them. A multi-choice control's labels are questions of their own."""
    import numpy as np

    from backend.labeling.label_config import ChoiceControl
    from backend.refinement.job import MIN_ITEMS, too_few

    single = ChoiceControl("label", "text", "text", ("ham", "spam"), False)
    assert "have the label 'ham'" in too_few(single, np.zeros(10, int))
    assert too_few(single, np.array([0] * 9 + [1])) == ""
    assert too_few(single, np.array([0, 1] * 3)) == f"6 labelled items; need {MIN_ITEMS}"
    multiple = ChoiceControl("tags", "text", "text", ("a", "b"), True)
    assert too_few(multiple, np.ones((10, 2), np.int8)) == ""
