"""Fine-tuned versions of the worker's policy, loaded on demand from the model store and kept in
a memory-bounded LRU set beside the base model.

A version shares the base model's text tower, reward model and MLLM; only its visual encoder
is a separate copy (the fine-tune changes nothing else), so a resident version costs the
visual encoder's bytes. Loading happens inside the job that first needs it: the lease keeps
being renewed meanwhile, so nothing is dropped or redelivered.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from adapters.engine import Engine
from adapters.types import Models
from contract.errors import ModelLoadError, UnknownModelError
from contract.names import split_version
from models.classifier import ClipClassifier
from models.store import ModelStore

log = logging.getLogger(__name__)


def visual_bytes(engine: Engine) -> int:
    visual: Any = engine.models.policy.clip.model.visual
    return int(sum(p.numel() * p.element_size() for p in visual.parameters()))


class ModelVersions:
    def __init__(self, base: Engine, store_dir: Path | str | None, max_bytes: int) -> None:
        self.base = base
        self.store = ModelStore(store_dir)
        self.max_bytes = max_bytes
        self._engines: OrderedDict[str, tuple[Engine, int, str | None]] = OrderedDict()
        """name -> (engine, visual-encoder bytes, owner of the version)"""
        self._lock = threading.Lock()
        # Read by the heartbeat thread without the lock (which a slow load holds): a tuple
        # replaced whole, never mutated.
        self._names: tuple[str, ...] = ()

    @property
    def base_name(self) -> str:
        return self.base.models.policy.name

    def engine_for(self, model: str | None, owner: str) -> Engine:
        """The engine whose policy is ``model`` (None: the base), for a job of ``owner``.
        Raises UnknownModelError for a version of another base model, one not in the store, or
        another tenant's (the API refuses those at intake; this is the worker's own check)."""
        if model is None or model == self.base_name:
            return self.base
        try:
            base, version = split_version(model)
        except ValueError as exc:
            raise UnknownModelError(str(exc), field="model") from exc
        if version is None or base != self.base_name:
            raise UnknownModelError(
                f"model {model!r} is not served by this worker (it serves {self.base_name} and its "
                "versions)", field="model")
        not_yours = UnknownModelError(f"no model version {model!r} for this key", field="model")
        with self._lock:
            if model in self._engines:
                engine, _, version_owner = self._engines[model]
                if version_owner != owner:
                    raise not_yours
                self._engines.move_to_end(model)
                return engine
            version_owner = self.store.manifest(base, version).owner
            if version_owner != owner:  # (checked before its weights are read)
                raise not_yours
            engine = self._load(model, version)
            self._engines[model] = (engine, visual_bytes(engine), version_owner)
            # The newest stays even if it alone exceeds the bound: the job needs it.
            while len(self._engines) > 1 and self.resident_bytes() > self.max_bytes:
                evicted, _ = self._engines.popitem(last=False)
                log.info("model version %s evicted (memory bound %d bytes)", evicted, self.max_bytes)
            self._names = tuple(self._engines)
            return engine

    def _load(self, name: str, version: str) -> Engine:
        base_models = self.base.models
        base_clip = base_models.policy.clip
        state = self.store.load_visual(self.base_name, version)
        if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
            # (a version stored before fine-tunes were checked, or a damaged file)
            raise ModelLoadError(f"version {name!r} has non-finite weights and cannot answer; point "
                                 "its label set at another version or the base model "
                                 "(POST /v1/label-sets/{name}/model/rollback)", field="model")
        model: Any = copy.copy(base_clip.model)
        # A fresh module dict: assigning the new visual must not touch the base model.
        model._modules = dict(base_clip.model._modules)
        visual: Any = copy.deepcopy(base_clip.model.visual)
        try:
            visual.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"version {name!r} does not fit {self.base_name!r}: {exc}",
                                 field="model") from exc
        visual.requires_grad_(False)
        model.visual = visual
        clip = replace(base_clip, name=name, model=model)
        policy = ClipClassifier(clip, base_models.policy.cache)
        log.info("loaded model version %s", name)
        return Engine(Models(policy=policy, reward=base_models.reward, mllm=base_models.mllm),
                      self.base.state_store)  # shared method state (TDA keys it by model name)

    def resident(self) -> list[str]:
        return list(self._names)

    def resident_bytes(self) -> int:
        return sum(size for _, size, _ in self._engines.values())
