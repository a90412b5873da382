"""Pure parts of LLM_BACKEND=openai's server handling: grammar escaping, server detection, what
each dialect constrains (the server itself: tests/model)."""
import pytest

from backend.engines.openai_server import detect_kind, dialect_for, gbnf_choice, gbnf_literal, parse_answer


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
