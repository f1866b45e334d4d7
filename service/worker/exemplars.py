"""The worker's view of label sets: exemplar images decoded once per label-set version, and the
confused pairs the mllm method estimates (shown by ``GET /v1/label-sets/{name}``)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import redis
from PIL import Image

from models.errors import InvalidInputError
from models.images import decode_image
from service.labelsets import LabelSet, confusions_key, decode, exemplar_key
from service.queue.keys import Keys
from service.queue.schemas import as_text

MAX_CACHED_BYTES = 256 * 1024 * 1024
"""Decoded exemplars kept per worker (RGB bytes), least recently used label sets dropped first.
Exemplars are stored at most 512 px on the short side (the API bounds them at intake)."""


def _decoded_bytes(exemplars: dict[int, list[Image.Image]]) -> int:
    return sum(image.width * image.height * 3 for images in exemplars.values() for image in images)


class LabelSetChangedError(InvalidInputError):
    code = "label_set_changed"


class ExemplarStore:
    def __init__(self, client: redis.Redis, keys: Keys, max_image_pixels: int) -> None:
        self.client: Any = client
        self.keys = keys
        self.max_image_pixels = max_image_pixels
        self._cache: OrderedDict[tuple[str, str, str], dict[int, list[Image.Image]]] = OrderedDict()

    def label_set(self, owner: str, name: str) -> LabelSet:
        raw = self.client.hgetall(self.keys.label_set(owner, name))
        if not raw:
            raise LabelSetChangedError(f"label set {name!r} no longer exists", field="label_set")
        return decode(raw, owner)

    def exemplars(self, owner: str, name: str, version: str | None) -> dict[int, list[Image.Image]]:
        """Decoded exemplars of the label set as it was when the job was submitted."""
        current = self.label_set(owner, name)
        if version is not None and current.version != version:
            raise LabelSetChangedError(
                f"label set {name!r} changed after this job was submitted; submit it again",
                field="label_set")
        key = (owner, name, current.version)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        numbered: dict[int, list[tuple[int, Image.Image]]] = {}
        for field, data in self.client.hgetall(exemplar_key(self.keys, owner, name)).items():
            text = as_text(field)
            class_index, _, number = text.partition(":")
            image = decode_image(bytes(data), field=f"exemplars[{text}]", max_pixels=self.max_image_pixels)
            numbered.setdefault(int(class_index), []).append((int(number), image))
        ordered = {index: [image for _, image in sorted(items, key=lambda item: item[0])]
                   for index, items in numbered.items()}
        self._cache[key] = ordered
        while len(self._cache) > 1 and sum(map(_decoded_bytes, self._cache.values())) > MAX_CACHED_BYTES:
            self._cache.popitem(last=False)
        return ordered

    def store_confusions(self, label_set: LabelSet, model: str, pairs: list[dict[str, object]]) -> None:
        key = confusions_key(self.keys, label_set.owner, label_set.name, label_set.version)
        self.client.hset(key, model, json.dumps({"top_pairs": pairs}))
