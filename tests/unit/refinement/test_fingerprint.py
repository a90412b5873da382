from dataclasses import replace

from backend.refinement.fingerprint import job_fingerprint
from backend.settings import Settings
from backend.store.ground_truth import GoldItem

SETTINGS = Settings.from_env({})
GOLD = [GoldItem(1, {"text": "a"}, {"label": ["x"]}, 11, "2026-01-01"),
        GoldItem(2, {"text": "b"}, {"label": ["y"]}, 12, "2026-01-02")]


def fp(settings=SETTINGS, engine="llamacpp:gemma", lineage="abc", version="m.abc.v1", gold=GOLD):
    return job_fingerprint(settings, engine, lineage, version, gold)


def test_the_same_job_inputs_give_the_same_fingerprint_in_any_order():
    assert fp() == fp(gold=list(reversed(GOLD)))


def test_what_the_outcome_depends_on_changes_it():
    relabelled = [GOLD[0], replace(GOLD[1], labels={"label": ["x"]}, updated_at="2026-01-03")]
    others = {fp(gold=relabelled), fp(gold=GOLD[:1]), fp(version="m.abc.v2"), fp(engine="openai:gpt"),
              fp(lineage="def"), fp(settings=SETTINGS.with_overrides(refine_max_shots=SETTINGS.refine_max_shots + 1)),
              fp(settings=SETTINGS.with_overrides(teacher_model="other")), fp(settings=SETTINGS.with_overrides(calibration="none"))}
    assert fp() not in others and len(others) == 8


def test_when_a_job_runs_does_not():
    assert fp(settings=SETTINGS.with_overrides(refine_min_new=999, refine_delay_s=5.0, port=1234)) == fp()
