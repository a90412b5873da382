"""Pure parts of LLM_BACKEND=openai: top-k ceilings, votes, grammar escaping, server detection,
coded prompts, settings, usage scopes, fail-fast mapping (the server itself: tests/model)."""
import math
import threading
import time

import numpy as np
import pytest

from backend.engines.next_token import allowed_logprobs, unlisted_ceiling, vote_logprobs
from backend.engines.openai_client import is_deterministic_failure
from backend.engines.openai_server import (
    detect_kind,
    dialect_for,
    gbnf_choice,
    gbnf_literal,
    parse_answer,
)
from backend.engines.usage import Prices, UsageMeter
from backend.errors import ConfigurationError, LabelConfigError
from backend.labeling.label_config import ChoiceControl
from backend.labeling.prompt import Demo, PromptVersion, render
from backend.labeling.service import map_tasks
from backend.settings import Settings

SINGLE = ChoiceControl("sentiment", "text", "text", ("very positive", "positive", "negative"), False)


def test_listed_answers_keep_their_log_probs_and_variants_are_summed():
    top = {" A": -1.0, "A": -3.0, " B": -2.0, "\n": -0.5}
    got = allowed_logprobs(top, [" A", " B"], k=4)
    assert got[0] == pytest.approx(np.logaddexp(-1.0, -3.0))
    assert got[1] == pytest.approx(-2.0)


def test_an_unlisted_answer_gets_the_most_it_could_have_had():
    top = {"x": math.log(0.5), "y": math.log(0.3), "z": math.log(0.15)}
    # below the 3rd listed token (0.15) and within the 0.05 left over: log(0.05)
    assert unlisted_ceiling(top, k=3) == pytest.approx(math.log(0.05))
    top = {"x": math.log(0.2), "y": math.log(0.1)}  # 0.7 left over, but it ranks below 0.1
    assert unlisted_ceiling(top, k=2) == pytest.approx(math.log(0.1))


def test_an_appended_sampled_token_does_not_lower_the_ceiling():
    """llama.cpp lists k entries plus the sampled token; the ceiling uses the k-th largest."""
    top = {"a": math.log(0.4), "b": math.log(0.2), "forced": -19.0}
    assert unlisted_ceiling(top, k=2) == pytest.approx(math.log(0.2))


def test_no_allowed_answer_listed_gives_equal_scores_hence_a_uniform_distribution():
    got = allowed_logprobs({"x": -0.1, "y": -3.0}, [" A", " B", " C"], k=2)
    assert len(set(got)) == 1


def test_votes_are_smoothed_and_invalid_answers_dropped():
    got = np.exp(vote_logprobs([" A", "A", "B", None, "maybe"], [" A", " B"]))
    assert got == pytest.approx([2.5 / 4, 1.5 / 4])
    with pytest.raises(ValueError):
        vote_logprobs([None, "x"], [" A", " B"])


@pytest.mark.parametrize("label", ['"', "\\", 'say "hi"', "a] | b", "é", "🎉", "x\n::= y", "ok ("])
def test_grammar_literals_escape_everything_but_letters_digits_and_spaces(label):
    literal = gbnf_literal(label)
    inner = literal[1:-1]
    assert literal[0] == literal[-1] == '"'
    assert all(ch.isascii() and (ch.isalnum() or ch in " \\") for ch in inner)
    decoded = inner.encode().decode("unicode_escape")  # \uXXXX / \UXXXXXXXX read back
    assert decoded == label


def test_a_grammar_lists_the_choices_only():
    assert gbnf_choice([" A", " B"]) == 'root ::= " A" | " B"'
    with pytest.raises(ValueError):
        gbnf_choice(["", " B"])


@pytest.mark.parametrize("url, owners, kind", [
    ("https://api.openai.com/v1", [], "openai"),
    ("http://10.0.0.5:8000/v1", ["vllm"], "vllm"),
    ("http://127.0.0.1:8080/v1", ["me"], "llamacpp"),
    ("http://127.0.0.1:8080/v1", ["llamacpp"], "llamacpp"),
    ("http://127.0.0.1:11434/v1", ["library"], "ollama"),
    ("http://127.0.0.1:1234/v1", ["someone"], "generic"),
])
def test_server_kind_is_detected_from_host_or_owned_by(url, owners, kind):
    assert detect_kind(url, owners) == kind


def test_dialects_constrain_votes_only_in_ways_the_server_accepts():
    assert "grammar" in dialect_for("llamacpp").constraint([" A"]).kwargs["extra_body"]
    assert dialect_for("vllm").constraint([" A"]).kwargs["extra_body"]["structured_outputs"]["choice"] == [" A"]
    openai = dialect_for("openai")
    assert openai.endpoint == "chat" and openai.answers([" A"]) == ("A",)
    schema = openai.constraint(["A", "B"])
    assert schema.kwargs["response_format"]["type"] == "json_schema" and schema.answer_format == "json"
    assert dialect_for("openai", "completions").constraint([" A"]).kwargs == {}  # OpenAI completions: none
    assert dialect_for("generic").constraint([" A"]).kwargs == {}
    assert parse_answer('{"answer": "B"}', "json") == "B" and parse_answer("{oops", "json") is None


def test_llamacpp_validation_500s_are_deterministic_other_500s_are_not():
    assert is_deterministic_failure(500, "1 validation error: Input should be 'text' or 'json_object'")
    assert is_deterministic_failure(501, "")
    assert not is_deterministic_failure(500, "Internal Server Error")
    assert not is_deterministic_failure(503, '{"error": {"message": "overloaded"}}')


def test_coded_prompt_lists_labels_and_scores_one_token_codes():
    demos = (Demo("great", ("very positive",)), Demo("meh", ("unknown label",)))
    rendered = render(SINGLE, PromptVersion(demos=demos), codes=True)
    assert "A) very positive\nB) positive\nC) negative" in rendered.prefix
    assert "Text: great\nAnswer: A" in rendered.prefix and "meh" not in rendered.prefix
    assert rendered.branches[0].continuations == (" A", " B", " C")
    assert rendered.item("x").endswith("\nAnswer:")
    assert render(SINGLE, PromptVersion()).branches[0].continuations == (" very positive", " positive", " negative")


def test_more_labels_than_codes_is_a_named_config_error():
    many = ChoiceControl("c", "text", "text", tuple(f"label {i}" for i in range(27)), False)
    with pytest.raises(LabelConfigError):
        render(many, PromptVersion(), codes=True)


def test_openai_settings_are_read_and_checked():
    s = Settings.from_env({"LLM_BACKEND": "openai", "OPENAI_BASE_URL": "http://h:8000/v1/", "LLM_MODEL": "m",
                           "OPENAI_SERVER_KIND": "vLLM", "OPENAI_TIMEOUT": "12.5", "OPENAI_MAX_RETRIES": "0",
                           "OPENAI_CONCURRENCY": "8", "LLM_PRICE_PER_1K_PROMPT": "0.15",
                           "TEACHER_BASE_URL": "https://api.openai.com/v1", "TEACHER_MODEL": "gpt-4o",
                           "TEACHER_API_KEY": "k"})
    assert (s.openai_base_url, s.openai_server_kind, s.openai_timeout_s, s.openai_max_retries,
            s.openai_concurrency) == ("http://h:8000/v1", "vllm", 12.5, 0, 8)
    assert s.llm_price_per_1k_prompt == 0.15 and s.teacher_enabled and s.teacher_model == "gpt-4o"
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        Settings.from_env({"LLM_BACKEND": "openai"})
    with pytest.raises(ConfigurationError, match="OPENAI_CONCURRENCY"):
        Settings.from_env({"LLM_BACKEND": "openai", "OPENAI_BASE_URL": "http://h/v1", "OPENAI_CONCURRENCY": "0"})
    with pytest.raises(ConfigurationError, match="OPENAI_SERVER_KIND"):
        Settings.from_env({"OPENAI_SERVER_KIND": "tgi"})


def test_usage_scopes_count_only_their_own_thread():
    meter = UsageMeter(Prices(per_1k_prompt=1.0, per_1k_completion=2.0))
    seen = {}

    def task(name, n):
        with meter.scope() as usage:
            for _ in range(n):
                meter.record(100, 1)
                time.sleep(0.001)
        seen[name] = usage

    threads = [threading.Thread(target=task, args=(i, i + 1)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [seen[i].requests for i in range(4)] == [1, 2, 3, 4]
    assert meter.total().prompt_tokens == 1000
    assert meter.to_dict(seen[0]) == {"prompt_tokens": 100, "completion_tokens": 1, "requests": 1, "cost": 0.102}


def test_map_tasks_keeps_order_and_stops_sending_after_a_failure():
    started = []

    def fn(i):
        started.append(i)
        time.sleep(0.02)
        if i == 1:
            raise RuntimeError("boom")
        return i * 10

    assert map_tasks(lambda i: i * 10, [3, 1, 2], workers=2) == [30, 10, 20]
    with pytest.raises(RuntimeError, match="boom"):
        map_tasks(fn, list(range(50)), workers=2)
    assert len(started) < 10
