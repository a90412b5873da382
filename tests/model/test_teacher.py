"""The teacher on real models: the embedded GGUF through llama.cpp proposing instructions, the same
GGUF behind a real llama_cpp.server as an OpenAI-compatible teacher, and the rewrite search on the
real engine within its budget. Nothing here asserts that a proposal is *better*: a 270M base model
is not expected to write good instructions, only to be handled safely."""
import time

import numpy as np
import pytest

from backend.errors import UpstreamUnavailable
from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion, default_instructions
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.instruction_rewrite import InstructionSearch, Rewrite, RewriteBudget
from backend.refinement.candidates.teacher import (MAX_INSTRUCTION_CHARS, LocalTeacher, Mistake, OpenAITeacher,
                                                   TeacherBrief, sanitize)
from backend.refinement.validation.crossval import fold_ids, logits_matrix
from tests.conftest import DATASETS, free_port

pytestmark = pytest.mark.model

DATA = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=80)
CONTROL = parse_label_config(DATA.label_config()).controls[0]


def brief() -> TeacherBrief:
    mistakes = tuple(Mistake(DATA.texts[i], DATA.labels[DATA.gold[i]], DATA.labels[1 - DATA.gold[i]])
                     for i in range(4))
    return TeacherBrief("label", DATA.labels, default_instructions(CONTROL), mistakes)


def assert_sanitised(proposals, n):
    assert len(proposals) <= n
    assert len({p.casefold() for p in proposals}) == len(proposals)
    for p in proposals:
        assert sanitize(p) == p and len(p) <= MAX_INSTRUCTION_CHARS
        assert p.casefold() != default_instructions(CONTROL).casefold()


def test_the_local_model_proposes_sanitised_instructions(engine):
    teacher = LocalTeacher(engine)
    proposals = teacher.propose(brief(), 4, seed=1)
    assert teacher.calls == 4
    assert proposals, "none of 4 samples survived the sanitiser"
    assert_sanitised(proposals, 4)


def test_generating_leaves_label_scores_exactly_as_they_were(engine):
    """complete() empties the KV cache: scoring never resumes from tokens llama.cpp grouped its
    own way, even when the completion prompt starts with the scoring prompt itself."""
    service = LabelingService(engine, calibration="none")
    prompt = PromptVersion(instructions=default_instructions(CONTROL))
    before = logits_matrix(service, CONTROL, prompt, DATA.texts[:2])
    engine.complete(f"{default_instructions(CONTROL)}\n\nText: {DATA.texts[0]}\nLabel: subjective. Text:",
                    max_tokens=16, temperature=0.8, seed=3)
    after = logits_matrix(service, CONTROL, prompt, DATA.texts[:2])
    assert np.array_equal(before, after)


def test_the_rewrite_search_on_the_real_engine_honours_its_call_budget(engine):
    service = LabelingService(engine)
    current = ControlRecipe()
    texts, gold = list(DATA.texts), np.array(DATA.gold)
    budget = RewriteBudget(rounds=3, proposals=2, beam=2, max_calls=150)
    teacher = LocalTeacher(engine)
    t0 = time.monotonic()
    search = InstructionSearch(Rewrite(teacher, budget), service, CONTROL, texts, gold, current,
                               logits_matrix(service, CONTROL, current.prompt, texts), fold_ids(len(texts), 5),
                               None, deadline=t0 + 600)
    results = search.candidates()
    assert search.log.llm_calls <= budget.max_calls
    assert search.log.teacher_calls == teacher.calls <= budget.rounds * budget.proposals
    assert search.log.stopped  # 150 calls cannot pay for three rounds of two proposals on 32 items
    if results:  # the tiny teacher may propose nothing usable; then the candidate is skipped
        assert [r.name for r in results] == ["rewrite", "rewrite+calibrated"]
        assert sanitize(results[0].recipe.prompt.instructions) == results[0].recipe.prompt.instructions
        assert results[0].probs.shape == (len(texts), 2)
    else:
        assert search.skipped


@pytest.mark.service
def test_an_openai_compatible_server_teaches_through_chat(llama_server):
    # short answers: the 270M model rambles to the token limit, and the server is slow on 2 busy cores
    teacher = OpenAITeacher(llama_server.base_url, "gemma-3-270m", max_retries=1, max_tokens=48)
    proposals = teacher.propose(brief(), 3, seed=0)
    assert 1 <= teacher.calls <= 3  # llama.cpp ignores `n`: one request per missing proposal
    assert_sanitised(proposals, 3)


def test_an_unreachable_teacher_is_a_named_error_not_a_hang():
    teacher = OpenAITeacher(f"http://127.0.0.1:{free_port()}/v1", "nobody", max_retries=0, timeout_s=5)
    t0 = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="teacher"):
        teacher.propose(brief(), 2)
    assert time.monotonic() - t0 < 10
