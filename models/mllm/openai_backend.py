"""MLLM scoring through an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, Ollama):
images as data-URL content parts, one token generated with ``logprobs``/``top_logprobs``, and
P(True) from the True/False entries among the first token's top alternatives. Prompts are sent
concurrently (the protocol has no batch call); timeouts and transient errors are retried."""

from __future__ import annotations

import base64
import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from models.mllm.prompts import DICLPrompt, MLLMError

TOP_LOGPROBS = 20
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
MAX_IMAGE_SIDE = 768
"""Images are shrunk to this before upload: the servers resize far below it anyway."""


def data_url(image: Image.Image) -> str:
    image = image.convert("RGB")
    if max(image.size) > MAX_IMAGE_SIDE:
        image = image.copy()
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def p_true_from_logprobs(top_logprobs: list[dict[str, Any]]) -> float:
    """Softmax over the True/False alternatives of the first answer token."""
    best: dict[str, float] = {}
    for entry in top_logprobs:
        word = str(entry.get("token", "")).strip().lower()
        if word in ("true", "false"):
            best[word] = max(best.get(word, -math.inf), float(entry["logprob"]))
    if not best:
        raise MLLMError("the MLLM's first answer token had neither True nor False among its "
                        f"top {len(top_logprobs)} alternatives")
    true, false = best.get("true", -math.inf), best.get("false", -math.inf)
    top = max(true, false)
    return math.exp(true - top) / (math.exp(true - top) + math.exp(false - top))


class OpenAIChatScorer:
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 60.0, retries: int = 2, concurrency: int = 8) -> None:
        if not model:
            raise MLLMError("an OpenAI-compatible MLLM needs a model name (TTA_MLLM_MODEL)")
        self.name = f"openai:{base_url}#{model}"
        self.model = model
        self.retries = retries
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))

    def request_body(self, prompt: DICLPrompt) -> dict[str, Any]:
        messages = prompt.chat_messages(lambda image: {"type": "image_url",
                                                       "image_url": {"url": data_url(image)}})
        return {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0,
                "logprobs": True, "top_logprobs": TOP_LOGPROBS}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last_error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(4.0, 0.25 * 2**attempt))
            try:
                response = self.http.post("/chat/completions", json=body)
            except httpx.TimeoutException:
                last_error = "timed out"
                continue
            except httpx.TransportError as exc:
                last_error = f"unreachable ({exc})"
                continue
            if response.status_code in RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise MLLMError(f"MLLM endpoint refused the request: HTTP {response.status_code} "
                                f"{response.text[:300]}")
            return dict(response.json())
        raise MLLMError(f"MLLM endpoint failed after {self.retries + 1} attempts: {last_error}")

    def _one(self, prompt: DICLPrompt) -> float:
        reply = self._post(self.request_body(prompt))
        try:
            content = reply["choices"][0]["logprobs"]["content"]
            return p_true_from_logprobs(content[0]["top_logprobs"])
        except (KeyError, IndexError, TypeError) as exc:
            raise MLLMError("the MLLM reply has no logprobs (does the server support "
                            "logprobs/top_logprobs?)") from exc

    def p_true(self, prompts: list[DICLPrompt]) -> list[float]:
        if len(prompts) == 1:
            return [self._one(prompts[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self._one, prompts))
