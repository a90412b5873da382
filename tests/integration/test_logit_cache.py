"""The logit cache on real parts: Redis and the embedded model through llama.cpp."""
import numpy as np
import pytest

from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.service import LabelingService
from backend.refinement.validation.crossval import PACE_CHUNK, paced_logits
from backend.store.logit_cache import LogitCache
from tests.conftest import DATASETS

pytestmark = pytest.mark.model

DATA = load_dataset(DATASETS / "sms_spam" / "train.jsonl", limit=20)
TEXTS = DATA.texts[:10]
CONTROL = parse_label_config(DATA.label_config()).controls[0]
PROMPT = PromptVersion(name="v0")


def test_a_job_scores_only_texts_the_last_job_did_not_and_gets_the_same_logits(engine, redis_conn):
    fresh = np.stack([s.logits for s in LabelingService(engine).score_texts(CONTROL, PROMPT, TEXTS)])

    first = LogitCache(redis_conn, 7, "gemma")
    LabelingService(engine, logit_cache=first).score_texts(CONTROL, PROMPT, TEXTS[:6])
    assert first.stats() == {"hits": 0, "misses": 6, "predicted": 0}

    second = LogitCache(redis_conn, 7, "gemma")  # the next job
    service = LabelingService(engine, logit_cache=second)
    assert service.cached(CONTROL, PROMPT, TEXTS, [()] * 10).tolist() == [True] * 6 + [False] * 4
    scored = service.score_texts(CONTROL, PROMPT, TEXTS)
    assert second.stats() == {"hits": 6, "misses": 4, "predicted": 0}
    assert np.array_equal(np.stack([s.logits for s in scored]), fresh)  # stored exactly
    assert all(s.usage is None for s in scored[:6])

    # another prompt, model or project is another entry
    other = PromptVersion(name="v1", instructions="Is this message spam?")
    for cache, prompt in ((LogitCache(redis_conn, 7, "gemma"), other), (LogitCache(redis_conn, 7, "other-model"), PROMPT),
                          (LogitCache(redis_conn, 8, "gemma"), PROMPT)):
        assert not LabelingService(engine, logit_cache=cache).cached(CONTROL, prompt, TEXTS[:1], [()]).any()


def test_the_cache_keeps_what_the_last_job_touched(engine, redis_conn):
    LabelingService(engine, logit_cache=LogitCache(redis_conn, 7, "gemma")).score_texts(CONTROL, PROMPT, TEXTS)
    job = LogitCache(redis_conn, 7, "gemma")
    LabelingService(engine, logit_cache=job).score_texts(CONTROL, PROMPT, TEXTS[7:])
    assert job.prune() == 7
    assert redis_conn.hlen(job.key) == 3
    assert redis_conn.ttl(job.key) > 0


def test_the_current_pass_takes_cached_items_first_then_the_newest(engine, redis_conn):
    cache = LogitCache(redis_conn, 7, "gemma")
    service = LabelingService(engine, logit_cache=cache)
    service.score_texts(CONTROL, PROMPT, DATA.texts[:3])  # the oldest three were scored by the last job
    logits, used, _, _ = paced_logits(service, CONTROL, PROMPT, DATA.texts, stop_at=0.0, partial=True)
    # time is up before it starts: the cached items, and one chunk of the newest
    assert used.tolist() == [True] * 3 + [False] * (20 - 3 - PACE_CHUNK) + [True] * PACE_CHUNK
    assert cache.stats() == {"hits": 3, "misses": 3 + PACE_CHUNK, "predicted": 0}
    alone = LabelingService(engine).score_texts(CONTROL, PROMPT, [DATA.texts[i] for i in np.flatnonzero(used)])
    assert np.array_equal(logits[used], np.stack([s.logits for s in alone]))
