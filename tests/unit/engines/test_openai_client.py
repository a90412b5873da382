"""Which failures of an OpenAI-compatible server fail fast instead of being retried."""
from backend.engines.openai_client import is_deterministic_failure


def test_llamacpp_validation_500s_are_deterministic_other_500s_are_not():
    assert is_deterministic_failure(500, "1 validation error: Input should be 'text' or 'json_object'")
    assert is_deterministic_failure(501, "")
    assert not is_deterministic_failure(500, "Internal Server Error")
    assert not is_deterministic_failure(503, '{"error": {"message": "overloaded"}}')
