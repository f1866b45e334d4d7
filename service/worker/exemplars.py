"""The worker's view of label sets: exemplar images decoded lazily, a class at a time, into a
cache bounded in bytes, and the confused pairs the mllm method estimates (shown by
``GET /v1/label-sets/{name}``).

A label set may hold up to ``TTA_MAX_EXEMPLARS_PER_LABEL_SET`` exemplars (each up to 512 px on
its short side: about 0.8 MB decoded). A request never needs them all at once: DICL shows the
exemplars of two classes per candidate, and the transition matrix is estimated a class at a
time. So a job gets a mapping that reads and decodes a class when it is first indexed, and the
worker keeps decoded classes only up to ``MAX_CACHED_BYTES`` (least recently used out): its
memory does not grow with the size of the label sets it serves.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import redis
from PIL import Image

from contract.errors import InvalidInputError
from contract.images import decode_image
from service.queue.keys import Keys
from service.queue.labelsets import LabelSet, decode, exemplar_field

MAX_CACHED_BYTES = 64 * 1024 * 1024
"""Decoded exemplars kept per worker (RGB bytes). One class (at most 16 exemplars) takes at
most about 12 MB, so the cache holds at least five of the classes a request uses."""

EXEMPLAR_SIDE = 512
"""Exemplars are used within a 512 px square (0.8 MB decoded at most): as large as the images
an MLLM or a CLIP takes (224-448 px), however long the stored image (up to 2048 px)."""
ClassKey = tuple[str, str, str, int]
"""(owner, label set, version, class index)"""


def _decoded_bytes(images: Sequence[Image.Image]) -> int:
    return sum(image.width * image.height * 3 for image in images)


class LabelSetChangedError(InvalidInputError):
    code = "label_set_changed"


class ClassExemplars(Sequence[Image.Image]):
    """One class's exemplars; decoded on first access (its length is known without that)."""

    def __init__(self, store: ExemplarStore, key: ClassKey, count: int) -> None:
        self.store = store
        self.key = key
        self.size = count

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Image.Image]: ...

    def __getitem__(self, index: int | slice) -> Image.Image | Sequence[Image.Image]:
        return self.store.decoded_class(self.key, self.size)[index]


class LazyExemplars(Mapping[int, Sequence[Image.Image]]):
    """Class index -> its exemplars, for the classes that have some."""

    def __init__(self, classes: dict[int, ClassExemplars]) -> None:
        self.classes = classes

    def __getitem__(self, index: int) -> Sequence[Image.Image]:
        return self.classes[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)


class ExemplarStore:
    def __init__(self, client: redis.Redis, keys: Keys, max_image_pixels: int,
                 max_cached_bytes: int = MAX_CACHED_BYTES) -> None:
        self.client: Any = client
        self.keys = keys
        self.max_image_pixels = max_image_pixels
        self.max_cached_bytes = max_cached_bytes
        self._cache: OrderedDict[ClassKey, list[Image.Image]] = OrderedDict()
        self.cached_bytes = 0

    def label_set(self, owner: str, name: str) -> LabelSet:
        raw = self.client.hgetall(self.keys.label_set(owner, name))
        if not raw:
            raise LabelSetChangedError(f"label set {name!r} no longer exists", field="label_set")
        return decode(raw, owner)

    def exemplars(self, owner: str, name: str, version: str | None) -> LazyExemplars:
        """The exemplars of the label set as it was when the job was submitted (each class
        read and decoded when first used)."""
        current = self.label_set(owner, name)
        if version is not None and current.version != version:
            raise LabelSetChangedError(
                f"label set {name!r} changed after this job was submitted; submit it again",
                field="label_set")
        return LazyExemplars({index: ClassExemplars(self, (owner, name, current.version, index), count)
                              for index, count in enumerate(current.exemplar_counts) if count})

    def decoded_class(self, key: ClassKey, count: int) -> list[Image.Image]:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        owner, name, _, index = key
        fields = [exemplar_field(index, number) for number in range(count)]
        images = []
        for field, data in zip(fields, self.client.hmget(self.keys.label_set_exemplars(owner, name), fields),
                               strict=True):
            if data is None:  # replaced (or deleted) since the job's check of its version
                raise LabelSetChangedError(f"label set {name!r} changed while the job ran; submit "
                                           "it again", field="label_set")
            image = decode_image(bytes(data), field=f"exemplars[{field}]", max_pixels=self.max_image_pixels)
            image.thumbnail((EXEMPLAR_SIDE, EXEMPLAR_SIDE))  # (a long one is kept up to 2048 px)
            images.append(image)
        self._cache[key] = images
        self.cached_bytes += _decoded_bytes(images)
        while len(self._cache) > 1 and self.cached_bytes > self.max_cached_bytes:
            _, evicted = self._cache.popitem(last=False)
            self.cached_bytes -= _decoded_bytes(evicted)
        return images

    def store_confusions(self, label_set: LabelSet, model: str, pairs: list[dict[str, object]]) -> None:
        key = self.keys.label_set_transition(label_set.owner, label_set.name, label_set.version)
        self.client.hset(key, model, json.dumps({"top_pairs": pairs}))
