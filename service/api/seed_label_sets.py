"""The bundled label sets (``shared_label_sets/*.json``, POST /v1/label-sets bodies written by
``python -m world.playground_assets``), stored once under the shared owner so every tenant can
use them read-only, as it can the bundled models: ``world-25`` gives the ``mllm`` method its
exemplars out of the box.

Every API process writes them at start-up, in the background and idempotently (a set already
stored at its content version is left alone), retrying while Redis is away: an API must start
whether or not Redis answers yet.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import redis

from service.queue.keys import Keys
from service.queue.labelsets import SHARED_OWNER, LabelSet, content_version, write_label_set
from service.queue.schemas import as_text, now_ms

log = logging.getLogger(__name__)
FOLDER = Path(__file__).resolve().parent / "shared_label_sets"
RETRY_S = 2.0


def bundled() -> list[tuple[LabelSet, dict[int, list[bytes]]]]:
    sets = []
    for path in sorted(FOLDER.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        labels, templates = list(body["labels"]), body.get("templates") or "single"
        exemplars = {labels.index(label): [base64.b64decode(image) for image in images]
                     for label, images in body.get("exemplars", {}).items()}
        sets.append((LabelSet(name=body["name"], owner=SHARED_OWNER, labels=labels, templates=templates,
                              version=content_version(labels, templates, exemplars),
                              exemplar_counts=[len(exemplars.get(i, [])) for i in range(len(labels))],
                              created_ms=now_ms()), exemplars))
    return sets


async def store(client: Any, keys: Keys) -> list[str]:
    """Write the bundled sets not stored at their version yet; their names."""
    written = []
    for label_set, exemplars in bundled():
        previous = await client.hget(keys.label_set(SHARED_OWNER, label_set.name), "version")
        if previous is not None and as_text(previous) == label_set.version:
            continue
        pipe = client.pipeline(transaction=True)
        write_label_set(pipe, keys, label_set, exemplars, as_text(previous) if previous else None)
        await pipe.execute()
        written.append(label_set.name)
    return written


async def store_until_done(client: Any, keys: Keys) -> None:
    while True:
        try:
            written = await store(client, keys)
            if written:
                log.info("bundled label sets stored: %s", ", ".join(written))
            return
        except redis.RedisError as exc:
            log.warning("bundled label sets not stored yet (%s); retrying", exc)
            await asyncio.sleep(RETRY_S)
