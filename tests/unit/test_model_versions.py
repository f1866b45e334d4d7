"""The worker's resident model versions: loaded from the store on demand, sharing the base's text
tower, bounded in memory (least recently used out), never touching the base model."""

import pytest
import torch

from adapters.engine import Engine, load_models
from contract.errors import UnknownModelError
from models.store import Manifest, ModelStore
from service.worker.versions import ModelVersions, visual_bytes
from tests.conftest import LABELS, POLICY, make_image


def _store_versions(root, base_engine, names):
    store = ModelStore(root)
    visual = base_engine.models.policy.clip.model.visual
    for i, version in enumerate(names):
        state = {k: v + 0.01 * (i + 1) if v.is_floating_point() else v
                 for k, v in visual.state_dict().items()}
        store.save(Manifest(base=POLICY, version=version, created_ms=i, owner="alice"), state)


def test_versions_load_on_demand_share_text_and_are_bounded(tmp_path):
    base = Engine(load_models(POLICY, None, device="cpu"))
    _store_versions(tmp_path, base, ["v1", "v2", "v3"])
    one = visual_bytes(base)
    versions = ModelVersions(base, tmp_path, max_bytes=2 * one)
    before = {k: v.clone() for k, v in base.models.policy.clip.model.state_dict().items()}

    assert versions.engine_for(None, "bob") is base and versions.engine_for(POLICY, "bob") is base
    with pytest.raises(UnknownModelError):  # another tenant's version: not loaded for bob ...
        versions.engine_for(f"{POLICY}@v1", "bob")
    assert versions.resident() == []
    v1 = versions.engine_for(f"{POLICY}@v1", "alice")
    assert v1.models.policy.name == f"{POLICY}@v1" and versions.engine_for(f"{POLICY}@v1", "alice") is v1
    with pytest.raises(UnknownModelError):  # ... nor used by bob once alice's job loaded it
        versions.engine_for(f"{POLICY}@v1", "bob")
    tuned, original = v1.models.policy.clip.model, base.models.policy.clip.model
    assert tuned.token_embedding is original.token_embedding  # the text tower is shared
    assert not torch.equal(tuned.visual.conv1.weight, original.visual.conv1.weight)
    result = v1.classify("zeroshot", make_image(0), LABELS)
    assert result.label in LABELS

    versions.engine_for(f"{POLICY}@v2", "alice")
    versions.engine_for(f"{POLICY}@v1", "alice")  # v1 used last: v2 is the least recent
    versions.engine_for(f"{POLICY}@v3", "alice")
    assert versions.resident() == [f"{POLICY}@v1", f"{POLICY}@v3"]
    assert versions.resident_bytes() == 2 * one
    after = base.models.policy.clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    for bad in (f"{POLICY}@missing", "tta-tiny-reward:random@v1", f"{POLICY}@bad name"):
        with pytest.raises(UnknownModelError):
            versions.engine_for(bad, "alice")
