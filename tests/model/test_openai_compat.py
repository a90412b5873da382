"""LLM_BACKEND=openai against a real llama-cpp-python server (same GGUF as the local engine), and
against a stdlib protocol peer for what that server cannot show (no logprobs, 500, 429, slowness).

Logprob requests cost about 0.5 s each on that server (it sorts the whole vocabulary per
position), so every test but the accuracy comparison sends only a handful of them.
"""
import json
import threading
import time

import numpy as np
import pytest

from backend.app import create_app
from backend.engines.openai_compat import OpenAICompatEngine
from backend.errors import UpstreamError, UpstreamRateLimited, UpstreamTimeout, UpstreamUnavailable
from backend.evaluation.datasets import Dataset, load_dataset
from backend.evaluation.run import evaluate
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.service import LabelingService, extract_texts
from backend.settings import Settings
from tests.conftest import DATASETS, load_fixture
from tests.model.openai_peer import completion

pytestmark = [pytest.mark.model, pytest.mark.service]

LLAMACPP_VALIDATION_500 = {"error": {
    "message": "1 validation error:\n {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\"}",
    "type": "internal_server_error", "param": None, "code": None}}


def openai_settings(base_url: str, **env) -> Settings:
    values = {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": base_url, "OPENAI_TIMEOUT": "120",
              "OPENAI_MAX_RETRIES": "1", **{k: str(v) for k, v in env.items()}}
    return Settings.from_env(values)


def control_for(labels, multiple=False):
    config = Dataset("t", tuple(labels), (), ()).label_config()
    if multiple:
        config = config.replace('choice="single"', 'choice="multiple"')
    return parse_label_config(config)


def predict(engine, label_task, texts, calibration="none"):
    items = extract_texts([{"data": {"text": t}} for t in texts], label_task, 5000)
    return LabelingService(engine, calibration=calibration).predict(items, label_task, ModelVersion("t.v0"))


def regions(results):
    return [r["result"][0] for r in results]


# --- the real llama.cpp server ----------------------------------------------------------------------


def test_predict_over_http_gives_labels_from_the_set_with_probabilities_and_usage(
        llama_server, tmp_path, redis_conn, redis_url):
    settings = openai_settings(llama_server.base_url, MODEL_DIR=tmp_path, REDIS_URL=redis_url,
                               LLM_PRICE_PER_1K_PROMPT="0.5", LLM_PRICE_PER_1K_COMPLETION="1.5")
    client = create_app(settings, redis_conn=redis_conn).test_client()
    body = load_fixture("predict-choices-single.json")
    labels = parse_label_config(body["label_config"]).controls[0].labels
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    for item in r.json["results"]:
        (region,) = item["result"]
        assert region["value"]["choices"][0] in labels
        assert set(region["probabilities"]) == set(labels)  # (jsonify sorts keys)
        assert sum(region["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert sum(region["raw_probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert region["probability_source"] == "top_logprobs"
        assert region["usage"]["prompt_tokens"] > 0 and region["usage"]["requests"] == 1
        assert region["usage"]["cost"] > 0
    metrics = client.get("/metrics").get_data(as_text=True)
    counters = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                if line.startswith("llmlb_llm_")}
    # the tasks, the 3 content-free calibration inputs and the one logprobs probe
    assert counters["llmlb_llm_requests_total"] == len(body["tasks"]) + 3 + 1
    assert counters["llmlb_llm_prompt_tokens_total"] > 0 and counters["llmlb_llm_cost_total"] > 0


def test_multi_token_labels_are_scored_through_letter_codes(llama_server):
    engine = OpenAICompatEngine(openai_settings(llama_server.base_url))
    label_task = control_for(["sports and games", "sports news", "politics"])
    assert LabelingService(engine).uses_codes(label_task.controls[0])
    (region,) = regions(predict(engine, label_task, ["the match ended in a draw after extra time"]))
    assert region["value"]["choices"][0] in label_task.controls[0].labels
    assert sum(region["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert region["usage"]["requests"] == 1  # one next-token distribution for the whole label set


def test_a_reasoning_version_writes_a_rationale_then_scores_the_codes_after_it(llama_server):
    from backend.labeling.prompt import PromptVersion
    from backend.labeling.reasoning import Reasoning
    from backend.labeling.recipe import ControlRecipe

    engine = OpenAICompatEngine(openai_settings(llama_server.base_url))
    control = control_for(["sports and games", "sports news", "politics"]).controls[0]
    recipe = ControlRecipe(PromptVersion(reasoning=Reasoning(2, 16, 0.7)))
    ((pred, _),) = LabelingService(engine, calibration="none").predict_control(
        control, recipe, ["the match ended in a draw after extra time"])
    assert pred.chosen[0] in control.labels and sum(pred.probabilities) == pytest.approx(1, abs=1e-4)
    assert pred.usage["requests"] == 4  # per sample: one rationale, one next-token distribution


def test_multiple_choice_asks_one_yes_no_question_per_label(llama_server):
    engine = OpenAICompatEngine(openai_settings(llama_server.base_url))
    label_task = control_for(["Sports", "Politics"], multiple=True)
    (region,) = regions(predict(engine, label_task, ["the match ended in a draw"]))
    assert set(region["value"]["choices"]) <= {"Sports", "Politics"} and region["value"]["choices"]
    assert all(0 < p < 1 for p in region["probabilities"].values())
    assert region["usage"]["requests"] == 2


def test_chat_endpoint_with_codes_when_the_tokenizer_is_unknown(llama_server):
    """Kind `openai` (as for api.openai.com): chat endpoint, no tokenizer, so letter codes."""
    engine = OpenAICompatEngine(openai_settings(llama_server.base_url, OPENAI_SERVER_KIND="openai"))
    label_task = control_for(["subjective", "objective"])
    assert engine.server().dialect.endpoint == "chat"
    assert LabelingService(engine).uses_codes(label_task.controls[0])
    (region,) = regions(predict(engine, label_task, ["it is the movie to beat this summer."]))
    assert region["value"]["choices"][0] in ("subjective", "objective")
    assert sum(region["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_votes_under_a_grammar_of_escaped_odd_labels_stay_in_the_set(llama_server):
    """Quotes, backslashes and non-ASCII labels (single tokens, so they go into the GBNF grammar
    themselves): an unescaped one would kill the server."""
    engine = OpenAICompatEngine(openai_settings(llama_server.base_url, OPENAI_PROBABILITIES="votes", OPENAI_VOTES=4))
    labels = ['"', "\\", "é", "🎉"]
    label_task = control_for(labels)
    assert not LabelingService(engine).uses_codes(label_task.controls[0])
    (region,) = regions(predict(engine, label_task, ["a strange text"]))
    assert region["probability_source"] == "votes"
    assert region["value"]["choices"][0] in labels
    assert sum(region["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert region["usage"]["requests"] == 4
    assert llama_server.alive()


def test_accuracy_on_40_subjectivity_items_is_within_5_points_of_the_local_engine(engine, llama_server):
    data = load_dataset(DATASETS / "subjectivity" / "test.jsonl", limit=40)
    local = evaluate(LabelingService(engine), data)
    remote_engine = OpenAICompatEngine(openai_settings(llama_server.base_url, OPENAI_CONCURRENCY=2))
    remote = evaluate(LabelingService(remote_engine), data)
    assert remote["probability_source"] == "top_logprobs"
    assert remote["usage"]["requests_per_item"] == 1
    for kind in ("raw", "calibrated"):
        gap = abs(remote[kind]["accuracy"] - local[kind]["accuracy"])
        assert gap <= 0.05, (kind, json.dumps(local), json.dumps(remote))


def test_a_server_killed_mid_request_gives_a_named_error_quickly(llama_server_factory):
    server = llama_server_factory()
    engine = OpenAICompatEngine(openai_settings(server.base_url, OPENAI_CONCURRENCY=2, OPENAI_MAX_RETRIES=2))
    assert engine.capabilities.probability_source == "top_logprobs"  # probe first: the kill hits scoring
    label_task = control_for(["subjective", "objective"])
    texts = [f"text number {i} about a film" for i in range(30)]
    outcome = {}

    def run():
        try:
            predict(engine, label_task, texts)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    server.proc.kill()
    killed_at = time.monotonic()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), UpstreamUnavailable), outcome
    assert outcome["at"] - killed_at < 10


# --- protocol peer: what the real server cannot show -----------------------------------------------


def test_a_server_without_logprobs_gets_votes_not_a_constant(peer_factory):
    """Seeds 0-2 answer A, seed 3 answers B, seed 4 answers garbage (dropped, never mapped)."""
    script = {0: " A", 1: " A", 2: " A", 3: " B", 4: " maybe"}
    peer = peer_factory(lambda path, body: (200, completion(script[body.get("seed", 0)]), {}))
    engine = OpenAICompatEngine(openai_settings(peer.base_url, OPENAI_ENDPOINT="completions"))
    label_task = control_for(["positive", "negative", "neutral"])
    (region,) = regions(predict(engine, label_task, ["fine"]))
    assert engine.capabilities.probability_source == "votes"
    assert region["probability_source"] == "votes"
    assert region["value"]["choices"] == ["positive"]
    # (votes + 1/2) / (4 valid + 3/2): A 3, B 1, C 0
    assert list(region["probabilities"].values()) == pytest.approx([3.5 / 5.5, 1.5 / 5.5, 0.5 / 5.5], abs=1e-5)
    votes = peer.completions()[1:]  # after the logprobs probe
    assert [b["seed"] for b in votes] == [0, 1, 2, 3, 4] and all("logprobs" not in b for b in votes)
    assert "A) positive" in votes[0]["prompt"]  # no tokenizer on this server: letter codes


CONTEXT_400 = {"error": {"message": "This model's maximum context length is 2048 tokens, however you requested "
                                   "6004 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}}


@pytest.mark.parametrize("status, body, attempts, error", [
    (500, {"error": {"message": "CUDA out of memory", "type": "server_error"}}, 3, UpstreamUnavailable),
    (500, LLAMACPP_VALIDATION_500, 1, UpstreamError),
    (400, CONTEXT_400, 1, UpstreamError),
])
def test_a_failing_server_gives_a_named_error_without_hammering(peer_factory, status, body, attempts, error):
    """A transient-looking 500 gets the SDK's backoff retries (2 here), a validation 500 and a 4xx
    none, and the other tasks of the batch are not sent once the server has failed."""
    peer = peer_factory(lambda path, _: (status, body, {}))
    engine = OpenAICompatEngine(openai_settings(peer.base_url, OPENAI_MAX_RETRIES=2, OPENAI_CONCURRENCY=1,
                                                OPENAI_PROBABILITIES="logprobs"))
    t0 = time.monotonic()
    with pytest.raises(error) as err:
        predict(engine, control_for(["yes", "no"]), [f"text {i}" for i in range(20)])
    assert type(err.value) is error
    assert str(status) in err.value.message and body["error"]["message"][:20] in err.value.message
    assert len(peer.completions()) == attempts
    assert time.monotonic() - t0 < 10


def test_a_429_is_retried_after_retry_after_then_named_with_a_503(peer_factory, tmp_path, redis_conn, redis_url):
    peer = peer_factory(lambda path, _: (429, {"error": {"message": "slow down", "type": "rate_limit"}},
                                         {"Retry-After": "1"}))
    settings = openai_settings(peer.base_url, MODEL_DIR=tmp_path, REDIS_URL=redis_url, OPENAI_MAX_RETRIES=1,
                               OPENAI_CONCURRENCY=1, OPENAI_PROBABILITIES="logprobs", CALIBRATION="none")
    client = create_app(settings, redis_conn=redis_conn).test_client()
    t0 = time.monotonic()
    r = client.post("/predict", json=load_fixture("predict-choices-single.json"))
    assert r.status_code == 503 and r.json["error"] == UpstreamRateLimited.code
    assert r.headers["Retry-After"] == "1"
    assert 1 <= time.monotonic() - t0 < 10  # the SDK waited Retry-After once
    assert len(peer.completions()) == 2


def test_a_slow_server_times_out_with_a_named_error(peer_factory):
    def slow(path, body):
        time.sleep(3)
        return 200, completion(" A"), {}

    peer = peer_factory(slow)
    engine = OpenAICompatEngine(openai_settings(peer.base_url, OPENAI_TIMEOUT="0.5", OPENAI_MAX_RETRIES=1))
    t0 = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        predict(engine, control_for(["yes", "no"]), ["text"])
    assert time.monotonic() - t0 < 3


def test_a_server_that_is_down_is_a_503_until_it_comes_up(tmp_path, redis_conn, redis_url):
    from tests.conftest import free_port

    settings = openai_settings(f"http://127.0.0.1:{free_port()}/v1", MODEL_DIR=tmp_path, REDIS_URL=redis_url,
                               OPENAI_MAX_RETRIES=0)
    client = create_app(settings, redis_conn=redis_conn).test_client()
    r = client.post("/predict", json=load_fixture("predict-choices-single.json"))
    assert r.status_code == 503 and r.json["error"] == UpstreamUnavailable.code
    assert "cannot reach" in r.json["message"]


def test_tasks_of_one_call_are_sent_concurrently_up_to_the_limit(peer_factory):
    def answer(path, body):
        time.sleep(0.3)
        return 200, completion(" A", logprobs={"tokens": [" A"], "token_logprobs": [-0.1],
                                              "top_logprobs": [{" A": -0.1, " B": -2.5}], "text_offset": [0]}), {}

    peer = peer_factory(answer)
    engine = OpenAICompatEngine(openai_settings(peer.base_url, OPENAI_CONCURRENCY=3, OPENAI_ENDPOINT="completions"))
    label_task = control_for(["yes", "no"])
    results = predict(engine, label_task, [f"text {i}" for i in range(9)])
    assert peer.max_in_flight == 3
    probs = np.array([list(r["probabilities"].values()) for r in regions(results)])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert {r["value"]["choices"][0] for r in regions(results)} == {"yes"}
