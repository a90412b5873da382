"""Settings read from the environment and checked at start-up."""
import pytest

from backend.errors import ConfigurationError
from backend.settings import Settings


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PREANNOTATE_ON_IMPORT": "true"}, "LABEL_STUDIO_URL"),
        ({"PREANNOTATE_ON_IMPORT": "maybe"}, "true or false"),
        ({"PREANNOTATE_BATCH": "0"}, "at least 1"),
    ],
)
def test_preannotate_settings_are_validated(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_rewrite_budget_settings_are_parsed_and_checked():
    s = Settings.from_env({"REFINE_REWRITE_ROUNDS": "0", "REFINE_REWRITE_PROPOSALS": "6",
                           "REFINE_REWRITE_BEAM": "3", "REFINE_REWRITE_MAX_CALLS": "500"})
    assert (s.refine_rewrite_rounds, s.refine_rewrite_proposals, s.refine_rewrite_beam,
            s.refine_rewrite_max_calls) == (0, 6, 3, 500)
    from backend.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="REFINE_REWRITE_BEAM"):
        Settings.from_env({"REFINE_REWRITE_BEAM": "0"})


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
