"""A stand-in for vLLM's OpenAI-compatible chat-completions endpoint (named as such: no MLLM can
run here). It speaks the protocol for real over HTTP (uvicorn in a thread) and answers by a script:
the first token's ``top_logprobs`` favour True when the last question names ``supported``."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.redis_server import free_port


class StandInMLLM:
    def __init__(self, supported: str = "", belief: float = 0.8) -> None:
        self.supported = supported
        self.belief = belief
        self.requests: list[dict[str, Any]] = []
        self.behaviour = "ok"
        """"ok", "slow" (sleeps past any client timeout), "error" (500), "refuse" (400),
        "no-logprobs" (a reply without them)."""
        self.port = free_port()
        self.app = self._build()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StandInMLLM:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in MLLM server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            if self.behaviour == "slow":
                await asyncio.sleep(5)
            if self.behaviour == "error":
                return JSONResponse({"error": "overloaded"}, status_code=500)
            if self.behaviour == "refuse":
                return JSONResponse({"error": "bad request"}, status_code=400)
            question = body["messages"][-1]["content"][-1]["text"]
            p = self.belief if self.supported and f" {self.supported}?" in question else 1 - self.belief
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": "True"},
                                      "finish_reason": "length"}
            if self.behaviour != "no-logprobs":
                top = [{"token": "True", "logprob": math.log(p)},
                       {"token": " False", "logprob": math.log(1 - p)}, {"token": "Yes", "logprob": -9.0}]
                first = {"token": "True", "logprob": math.log(p), "top_logprobs": top}
                choice["logprobs"] = {"content": [first]}
            return JSONResponse({"id": "x", "object": "chat.completion", "model": body["model"],
                                 "choices": [choice]})

        return app
