"""`preannotate --dry-run` (Preannotator.estimate): the counts after the run's own filters, the time
extrapolated from a sample and, with a price table, the cost, with nothing written (pure logic: the
scripted engine, a token meter as a remote engine keeps one, and the in-memory Label Studio client
of test_batch; the real Label Studio is driven in tests/e2e/test_cli_dry_run.py)."""
import time

from backend.engines.scripted import ScriptedEngine
from backend.engines.usage import Prices, UsageMeter
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService
from backend.preannotation.batch import Preannotator, Selection
from backend.settings import Settings
from backend.store.versions import VersionRegistry
from tests.unit.preannotation.test_batch import FakeLabelStudio

PROMPT_TOKENS, COMPLETION_TOKENS = 120, 1


class SlowEngine(ScriptedEngine):
    """The scripted engine at a known speed: 20 ms a scored text."""

    def score(self, *args, **kwargs):
        time.sleep(0.02)
        return super().score(*args, **kwargs)


class MeteredEngine(ScriptedEngine):
    """The scripted engine, billing each scored text as a remote server reports its usage."""

    def __init__(self, prices: Prices):
        super().__init__()
        self.usage = UsageMeter(prices)

    def score(self, *args, **kwargs):
        self.usage.record(PROMPT_TOKENS, COMPLETION_TOKENS)
        return super().score(*args, **kwargs)


def tasks() -> list[dict]:
    out = [{"id": i, "data": {"text": f"I love it {i}"}, "predictions": []} for i in range(1, 11)]
    out[1]["predictions"] = [{"id": 1, "model_version": "old", "score": 0.9}]  # left out by --only-missing
    out[2]["data"] = {"other": "no text field"}  # sampled, unreadable
    return out


def annotator(tmp_path, client, engine, batch: int = 3) -> Preannotator:
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "PREANNOTATE_BATCH": str(batch)})
    return Preannotator(client, LabelingService(engine), VersionRegistry(None, "scripted", tmp_path, ModelVersion),
                        settings)


def test_a_dry_run_counts_measures_and_writes_nothing(tmp_path):
    client = FakeLabelStudio(tasks())
    runner = annotator(tmp_path, client, SlowEngine())
    plan = runner.plan(7, selection=Selection(only_missing=True))
    estimate = runner.estimate(plan, sample=4)
    assert (estimate.tasks, estimate.up_to_date, estimate.not_selected, estimate.to_predict, estimate.batches) == \
        (10, 0, 1, 9, 3)
    assert estimate.sampled == 3 and [u["task"] for u in estimate.unreadable] == [3]  # of tasks 1, 3, 4, 5
    assert 0.02 <= estimate.seconds_per_task < 0.2 and estimate.sample_seconds >= 0.06
    # the first task alone (it also pays calibration), then 8 more at the measured rate
    assert 9 * 0.02 <= estimate.estimated_seconds < 2
    assert estimate.tokens_per_task is None and estimate.estimated_cost is None  # a local engine: no tokens billed
    assert client.created == [] and client.updated == {}
    assert estimate.to_dict()["dry_run"] is True and estimate.to_dict()["model_version"] == plan.version.label


def test_a_priced_remote_model_gets_a_cost_and_an_unpriced_one_its_tokens(tmp_path):
    client = FakeLabelStudio(tasks())
    runner = annotator(tmp_path, client, MeteredEngine(Prices(per_1k_prompt=0.5, per_1k_completion=2.0)))
    estimate = runner.estimate(runner.plan(7), sample=5)
    assert estimate.to_predict == 10 and estimate.sampled == 4
    assert estimate.tokens_per_task == {"prompt": PROMPT_TOKENS, "completion": COMPLETION_TOKENS}
    per_task = PROMPT_TOKENS / 1000 * 0.5 + COMPLETION_TOKENS / 1000 * 2.0
    # the first task's calls (it, and the prompt's calibration, paid once), then 9 tasks at one call each;
    # the 3 other sampled tasks took one call each
    first_calls = runner.service.engine.usage.total().requests - 3
    assert first_calls > 1
    assert abs(estimate.estimated_cost - (first_calls + 9) * per_task) < 1e-9
    assert client.created == []

    unpriced = annotator(tmp_path, FakeLabelStudio(tasks()), MeteredEngine(Prices()))
    estimate = unpriced.estimate(unpriced.plan(7), sample=2)
    assert estimate.tokens_per_task == {"prompt": PROMPT_TOKENS, "completion": COMPLETION_TOKENS}
    assert estimate.estimated_cost is None


def test_no_sample_no_estimate_and_the_model_is_not_even_loaded(tmp_path):
    loads = []

    def make_service():
        loads.append(1)
        return LabelingService(ScriptedEngine())

    settings = Settings.from_env({"MODEL_DIR": str(tmp_path)})
    runner = Preannotator(FakeLabelStudio(tasks()), make_service,
                          VersionRegistry(None, "scripted", tmp_path, ModelVersion), settings)
    estimate = runner.estimate(runner.plan(7), sample=0)
    assert estimate.to_predict == 10 and estimate.sampled == 0 and estimate.estimated_seconds is None
    assert loads == []  # planning reads Label Studio only
    runner.estimate(runner.plan(7), sample=1)
    assert loads == [1]
