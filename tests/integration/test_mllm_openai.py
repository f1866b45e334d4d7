"""The OpenAI-compatible MLLM backend against a stand-in chat-completions server over HTTP."""

from __future__ import annotations

import pytest

from models.mllm.loading import load_scorer
from models.mllm.openai_backend import OpenAIChatScorer, p_true_from_logprobs
from models.mllm.prompts import DICLPrompt, MLLMError, Shot
from tests.conftest import make_image
from tests.openai_standin import StandInMLLM


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    standin = StandInMLLM(supported="red ball", belief=0.8).start()
    yield standin
    standin.stop()


@pytest.fixture
def scorer(server) -> OpenAIChatScorer:
    server.behaviour = "ok"
    server.requests.clear()
    loaded = load_scorer(f"openai:{server.base_url}", model="qwen-vl-standin", timeout_s=1.0,
                         retries=2, concurrency=4)
    assert isinstance(loaded, OpenAIChatScorer)
    return loaded


def prompt(label: str) -> DICLPrompt:
    return DICLPrompt((Shot(make_image(1), "black cat", False), Shot(make_image(2), label, True),
                       Shot(make_image(3), label, None)))


def test_request_shape_and_logprob_parsing(server, scorer):
    scores = scorer.p_true([prompt("red ball"), prompt("blue car")])
    assert scores == pytest.approx([0.8, 0.2])
    body = server.requests[0]
    assert body["model"] == "qwen-vl-standin" and body["max_tokens"] == 1
    assert body["logprobs"] is True and body["top_logprobs"] >= 2 and body["temperature"] == 0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    answers = [m["content"][0]["text"] for m in body["messages"] if m["role"] == "assistant"]
    assert answers == ["False", "True"]
    images = [m["content"][0]["image_url"]["url"] for m in body["messages"] if m["role"] == "user"]
    assert len(images) == 3 and all(url.startswith("data:image/png;base64,") for url in images)


def test_timeouts_are_retried_then_reported(server, scorer):
    server.behaviour = "slow"
    with pytest.raises(MLLMError, match="after 3 attempts: timed out"):
        scorer.p_true([prompt("red ball")])
    assert len(server.requests) == 3


def test_server_errors_are_retried_client_errors_are_not(server, scorer):
    server.behaviour = "error"
    with pytest.raises(MLLMError, match="HTTP 500"):
        scorer.p_true([prompt("red ball")])
    assert len(server.requests) == 3
    server.requests.clear()
    server.behaviour = "refuse"
    with pytest.raises(MLLMError, match="refused the request: HTTP 400"):
        scorer.p_true([prompt("red ball")])
    assert len(server.requests) == 1


def test_replies_without_logprobs_or_answers_are_errors(server, scorer):
    server.behaviour = "no-logprobs"
    with pytest.raises(MLLMError, match="no logprobs"):
        scorer.p_true([prompt("red ball")])
    with pytest.raises(MLLMError, match="neither True nor False"):
        p_true_from_logprobs([{"token": "Maybe", "logprob": -0.1}])
    assert p_true_from_logprobs([{"token": " true", "logprob": -0.5}]) == 1.0


def test_unreachable_endpoint_and_missing_model_name():
    from service.redis_server import free_port

    with pytest.raises(MLLMError, match="model name"):
        load_scorer("openai:http://127.0.0.1:1/v1")
    scorer = load_scorer(f"openai:http://127.0.0.1:{free_port()}/v1", model="m", retries=1, timeout_s=1)
    assert scorer is not None
    with pytest.raises(MLLMError, match="unreachable"):
        scorer.p_true([prompt("red ball")])
