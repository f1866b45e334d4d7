"""The servers ``tta bench peers`` compares the service with, on the same models and payload
(JSON ``{"images": [base64], "labels": [...], "method": ...}``):

- ``plain``: one FastAPI endpoint that runs the engine in-process (no queue, no Redis): the
  floor a queue-based service can be measured against.
- ``litserve``: LitServe (a maintained serving framework) with its dynamic batching for
  zero-shot (up to 32 requests, 5 ms wait, as the service's defaults) and one request at a time
  for the adaptation methods.

Run as ``python -m bench.peer_servers {plain,litserve} --port P [--method M]``.
"""

from __future__ import annotations

import argparse
import base64
import os
from typing import Any

import litserve as ls
from PIL import Image

from adapters.engine import BatchItem, Engine, load_models
from contract.images import decode_image
from contract.request import normalize
from service.settings import get_settings


def load_engine() -> Engine:
    """The models, with the torch threads the service's workers get under ``tta serve`` (all
    cores but one), so every peer computes with the same resources."""
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads or max(1, (os.cpu_count() or 2) - 1))
    reward = settings.reward_model if settings.reward_model not in (None, "", "none") else None
    return Engine(load_models(settings.model, reward, device=settings.device,
                              precision=settings.precision))


def parse_body(body: dict[str, Any]) -> tuple[Image.Image, list[str], str]:
    image = decode_image(base64.b64decode(body["images"][0]))
    return image, list(body["labels"]), str(body.get("method", "zeroshot"))


def answer(result: Any) -> dict[str, Any]:
    payload: dict[str, Any] = result.to_dict()
    return {"results": [payload]}


def serve_plain(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    engine = load_engine()
    app = FastAPI()

    @app.post("/classify")
    async def classify(body: dict[str, Any]) -> dict[str, Any]:
        image, labels, method = parse_body(body)
        return answer(await run_in_threadpool(engine.classify, method, image, labels))

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class ClipLitAPI(ls.LitAPI):
    """At module level: LitServe pickles the API object into its worker process."""

    method = "zeroshot"

    def setup(self, device: str) -> None:
        self.engine = load_engine()

    def decode_request(self, request):
        # No annotation on purpose: LitServe reads it to build the endpoint, and the string
        # that ``from __future__ import annotations`` leaves would become a query parameter.
        return parse_body(request)

    def predict(self, batch: Any) -> Any:
        if self.method == "zeroshot":
            items = [BatchItem(normalize("zeroshot", labels), image) for image, labels, _ in batch]
            return self.engine.run_zeroshot_batch(items)
        image, labels, name = batch
        return self.engine.classify(name, image, labels)

    def encode_response(self, output: Any) -> dict[str, Any]:
        return answer(output)


def serve_litserve(port: int, method: str) -> None:
    batching = {"max_batch_size": 32, "batch_timeout": 0.005} if method == "zeroshot" else {}
    api = ClipLitAPI(**batching)
    api.method = method
    server = ls.LitServer(api, accelerator="cpu", devices=1, timeout=120)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["plain", "litserve"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="zeroshot")
    args = parser.parse_args()
    if args.kind == "plain":
        serve_plain(args.port)
    else:
        serve_litserve(args.port, args.method)


if __name__ == "__main__":
    main()
