"""Named label sets in Redis: class names, prompt templates and exemplar images per class,
owned by the API key that made them. Persistent (no TTL): they survive restarts of every
process, and of Redis where it persists. Torch-free; the API uses the async client, the worker
the sync one, through the same key layout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from service.queue.keys import Keys
from service.queue.schemas import as_text

SHARED_OWNER = "*"
"""The owner of the bundled label sets every tenant may use read-only (no tenant name contains
'*': ``service.api.auth.check_tenant``)."""
MAX_EXEMPLARS_PER_CLASS = 16
LABEL_SET_TEXT_FIELDS = ("name", "labels", "templates")


@dataclass(frozen=True)
class LabelSet:
    name: str
    owner: str
    labels: list[str]
    templates: str | list[str]
    version: str
    """Content hash: changes whenever labels, templates or exemplars change."""
    exemplar_counts: list[int]
    created_ms: int
    confusions: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "templates": self.templates,
                "version": self.version, "created_ms": self.created_ms,
                "exemplars": dict(zip(self.labels, self.exemplar_counts, strict=True)),
                "n_labels": len(self.labels), "n_exemplars": sum(self.exemplar_counts),
                "shared": self.owner == SHARED_OWNER}


def content_version(labels: list[str], templates: str | list[str],
                    exemplars: dict[int, list[bytes]]) -> str:
    digest = hashlib.sha256(json.dumps([labels, templates]).encode())
    for index in sorted(exemplars):
        for image in exemplars[index]:
            digest.update(f"|{index}|".encode())
            digest.update(hashlib.sha256(image).digest())
    return digest.hexdigest()[:16]


def exemplar_field(class_index: int, number: int) -> str:
    """The field of one exemplar in ``Keys.label_set_exemplars``."""
    return f"{class_index}:{number}"


def write_label_set(pipe: Any, keys: Keys, label_set: LabelSet, exemplars: dict[int, list[bytes]],
                    previous_version: str | None) -> None:
    """Queue on ``pipe`` (a transaction) the writes that create or replace a label set: its
    fields, its exemplars (the old ones go), its name in the owner's index; a replaced
    version's confused pairs go too."""
    owner, name = label_set.owner, label_set.name
    if previous_version is not None and previous_version != label_set.version:
        pipe.delete(keys.label_set_transition(owner, name, previous_version))
    pipe.delete(keys.label_set_exemplars(owner, name))
    for class_index, class_images in exemplars.items():
        for number, data in enumerate(class_images):
            pipe.hset(keys.label_set_exemplars(owner, name), exemplar_field(class_index, number), data)
    pipe.hset(keys.label_set(owner, name), mapping=encode(label_set))
    pipe.sadd(keys.label_set_index(owner), name)


def decode(raw: dict[Any, Any], owner: str) -> LabelSet:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return LabelSet(name=fields["name"], owner=owner, labels=json.loads(fields["labels"]),
                    templates=json.loads(fields["templates"]), version=fields["version"],
                    exemplar_counts=json.loads(fields["exemplar_counts"]),
                    created_ms=int(fields["created_ms"]))


def encode(label_set: LabelSet) -> dict[str, str]:
    return {"name": label_set.name, "labels": json.dumps(label_set.labels),
            "templates": json.dumps(label_set.templates), "version": label_set.version,
            "exemplar_counts": json.dumps(label_set.exemplar_counts),
            "created_ms": str(label_set.created_ms)}
