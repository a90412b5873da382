"""Picking one option of an explicit set on a model server (a line of a span list): what each
server kind is sent, how its answer is read, and what is cut for a kind with limits. The server is
a fake client here; the real llama.cpp server: tests/model/test_openai_spans.py."""
import json
from types import SimpleNamespace

import pytest

from backend.engines.base import Capabilities
from backend.engines.openai_compat import OpenAICompatEngine, Server
from backend.engines.openai_server import ENUM_LIMITS, dialect_for, fit_options, gbnf_choice, pick_option
from backend.errors import EngineError
from backend.settings import Settings

OPTIONS = ("Types:", "- Bob\n", "- Rome\n", "- Bob in Rome\n")


def test_llamacpp_gets_a_gbnf_alternation_of_the_escaped_options():
    kept, constraint = dialect_for("llamacpp").option_constraint(OPTIONS)
    assert kept == OPTIONS
    grammar = constraint.kwargs["extra_body"]["grammar"]
    assert grammar == gbnf_choice(OPTIONS)
    assert '"\\u002D Bob\\u000A"' in grammar and '"Types\\u003A"' in grammar  # no raw newline or colon
    assert constraint.answer_format == "text"


def test_vllm_gets_its_choice_field():
    kept, constraint = dialect_for("vllm").option_constraint(OPTIONS)
    assert constraint.kwargs == {"extra_body": {"structured_outputs": {"choice": list(OPTIONS)}}}


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_openai_and_ollama_chat_get_a_json_schema_enum(kind):
    dialect = dialect_for(kind, "chat")
    kept, constraint = dialect.option_constraint(OPTIONS)
    fmt = constraint.kwargs["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["answer"]["enum"] == list(OPTIONS)
    assert constraint.answer_format == "json"


@pytest.mark.parametrize("kind, endpoint", [("generic", "completions"), ("generic", "chat"), ("openai", "completions")])
def test_a_kind_without_a_mechanism_stops_at_the_line_end_and_is_validated(kind, endpoint):
    kept, constraint = dialect_for(kind, endpoint).option_constraint(OPTIONS)
    assert kept == OPTIONS and constraint.kwargs == {"stop": ["\n"]} and constraint.answer_format == "text"


def test_an_enum_is_cut_to_openai_s_limits_and_the_others_are_not():
    many = ("Types:",) + tuple(f"- word{i} and some more words\n" for i in range(2000))
    most, over, chars = ENUM_LIMITS
    kept, _ = dialect_for("openai").option_constraint(many)
    assert kept == many[: len(kept)] and over <= len(kept) <= most
    assert len(kept) == over or sum(map(len, kept)) <= chars
    assert dialect_for("llamacpp").option_constraint(many)[0] == many
    assert dialect_for("vllm").option_constraint(many)[0] == many
    assert fit_options(OPTIONS, ENUM_LIMITS) == OPTIONS
    short = tuple(f"{i}" for i in range(1200))
    assert fit_options(short, ENUM_LIMITS) == short[:1000]  # short values: only the count binds


def test_an_answer_is_read_as_one_of_the_options_or_none():
    assert pick_option("- Rome\n", "text", OPTIONS) == "- Rome\n"
    assert pick_option("- Rome", "text", OPTIONS) == "- Rome\n"  # a stop sequence drops the newline
    assert pick_option(json.dumps({"answer": "- Bob in Rome\n"}), "json", OPTIONS) == "- Bob in Rome\n"
    assert pick_option("Types:", "text", OPTIONS) == "Types:"
    assert pick_option("- rome", "text", OPTIONS) is None  # never matched to the nearest option
    assert pick_option("- Paris", "text", OPTIONS) is None
    assert pick_option("{oops", "json", OPTIONS) is None


class FakeClient:
    """Records each request; answers with the next scripted text."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.completions = SimpleNamespace(create=self._completion)
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._chat))

    def _usage(self):
        return SimpleNamespace(prompt_tokens=10, completion_tokens=3)

    def _completion(self, **kwargs):
        self.requests.append(("completions", kwargs))
        return SimpleNamespace(choices=[SimpleNamespace(text=self.answers.pop(0), logprobs=None)], usage=self._usage())

    def _chat(self, **kwargs):
        self.requests.append(("chat", kwargs))
        message = SimpleNamespace(content=self.answers.pop(0))
        return SimpleNamespace(choices=[SimpleNamespace(message=message, logprobs=None)], usage=self._usage())


def engine_for(kind, answers, endpoint="auto"):
    settings = Settings.from_env({"LLM_BACKEND": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                                  "LLM_MODEL": "m"})
    engine = OpenAICompatEngine(settings)
    engine._server = Server(dialect_for(kind, endpoint), "m", None,
                            Capabilities(exact_logprobs=False, max_context=2048, next_token_only=True,
                                         exact_token_counts=False, probability_source="top_logprobs"))
    engine._client = FakeClient(answers)
    return engine


@pytest.mark.parametrize("kind, answer, endpoint, field", [
    ("llamacpp", "- Rome\n", "completions", "extra_body"),
    ("vllm", "- Rome\n", "completions", "extra_body"),
    ("openai", '{"answer": "- Rome\\n"}', "chat", "response_format"),
    ("ollama", '{"answer": "- Rome\\n"}', "chat", "response_format"),
    ("ollama", "- Rome", "completions", "stop"),  # Ollama's completions take no response_format
    ("generic", "- Rome", "completions", "stop"),
])
def test_choose_sends_one_greedy_constrained_request_per_kind(kind, answer, endpoint, field):
    engine = engine_for(kind, [answer], endpoint)
    assert engine.choose("P\n", "Text: Bob in Rome\nNames:\n", OPTIONS, max_tokens=24) == "- Rome\n"
    ((sent_to, request),) = engine._client.requests
    assert sent_to == endpoint and request["temperature"] == 0.0 and field in request
    assert request["max_tokens"] > 24  # room for the constraint's own tokens (JSON wrapping, pieces)
    prompt = request["prompt"] if endpoint == "completions" else request["messages"][0]["content"]
    assert prompt == "P\nText: Bob in Rome\nNames:\n"
    assert "logprobs" not in request and "top_logprobs" not in request  # which option, not its log_prob
    assert engine.usage.total().requests == 1


def test_a_generic_server_s_answer_outside_the_set_is_dropped():
    engine = engine_for("generic", ["- Bob and Alice"])
    assert engine.choose("", "Names:\n", OPTIONS, max_tokens=24) is None


def test_choose_needs_options():
    with pytest.raises(EngineError):
        engine_for("llamacpp", ["x"]).choose("", "", (), max_tokens=4)
