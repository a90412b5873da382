"""What `eval --simulate` says of a round (pure logic): the time to the first better version,
and the served version against the best baseline."""
from backend.evaluation.simulate import cross_validated, first_better_seconds, tuned_outcome, verdict


def test_the_first_better_version_is_the_cheap_stage_s_when_the_job_published_in_stages():
    staged = {"status": "published", "seconds": 90.0,
              "stages": [{"stage": "cheap", "seconds": 11.5}, {"stage": "llm", "seconds": 88.0}]}
    assert first_better_seconds(staged) == 11.5
    assert first_better_seconds({"status": "published", "seconds": 40.0}) == 40.0  # one version, at the end
    assert first_better_seconds({"status": "kept", "seconds": 40.0}) is None


def test_the_verdict_names_the_best_baseline_and_the_margin_over_it():
    row = {"labels": 200, "macro_f1": 0.81, "ece": 0.04, "head_only_macro_f1": 0.77, "first_better_seconds": 12.0,
           "job_seconds": 95.0}
    line = verdict(row, {"macro_f1": 0.52, "ece": 0.1})
    assert line == ("200 labels: served 0.810 (ECE 0.040), head alone 0.770, plain calibrated 0.520: "
                    "+0.040 against head alone; first better version 12 s into a 95 s job")
    behind = verdict({**row, "macro_f1": 0.5, "first_better_seconds": None}, {"macro_f1": 0.8, "ece": 0.1})
    assert "-0.300 against plain calibrated; no new version" in behind


def test_the_tuned_stage_outcome_names_its_best_and_the_scores_it_was_compared_by():
    compared = {"name": "tuned-head", "macro_f1": 0.955, "optimism": -0.003, "compared_with": "head-balanced",
                "compared_score": 0.907}
    result = {"controls": {
        "label": {"tuned": {"best": "tuned-head", "accepted": True, "candidates": [compared, {"name": "x+tuned-head"}],
                            "skipped": []}},
        "topic": {"tuned": {"best": "current", "accepted": False, "candidates": [],
                            "skipped": ["tuned-head: time budget spent"]}},
        "other": {"accepted": False},
        "refreshed": {"tuned": {"best": "x+tuned-head", "accepted": True, "refresh": True,
                                "candidates": [{"name": "x+tuned-head", "no_worse": True}], "skipped": []}}}}
    assert tuned_outcome(result) == {
        "label": {"best": "tuned-head", "accepted": True, "candidate": "tuned-head", "score": 0.958,
                  "against": "head-balanced", "against_score": 0.907},
        "topic": {"best": "current", "accepted": False, "skipped": ["tuned-head: time budget spent"]},
        "refreshed": {"best": "x+tuned-head", "accepted": True, "refresh": True}}
    assert tuned_outcome({"status": "kept"}) == {}


def test_each_round_shows_what_the_selection_saw_per_candidate():
    result = {"controls": {"label": {"candidates": [{"name": "current", "macro_f1": 0.61},
                                                    {"name": "head-state", "macro_f1": 0.83}]},
                           "other": {"skipped": "3 labelled items; need 10"}}}
    assert cross_validated(result) == {"label": {"current": 0.61, "head-state": 0.83}, "other": {}}
    assert cross_validated({"status": "unchanged"}) == {}
