"""Model versions: NAME@VERSION names, the store's layout, and the loader applying a version."""

import json

import pytest
import torch

from contract.errors import ModelLoadError, UnknownModelError
from contract.names import parse_model_name, split_version
from models.loading import load_clip
from models.store import Manifest, ModelStore, new_version_id


def test_version_names_parse_around_every_base_form():
    assert split_version("world-policy@ft-1") == ("world-policy", "ft-1")
    assert split_version("world-policy") == ("world-policy", None)
    spec = parse_model_name("world-policy@ft-1", frozenset({"world-policy"}))
    assert (spec.kind, spec.arch, spec.version) == ("bundled", "world-policy", "ft-1")
    assert spec.base == "world-policy"
    spec = parse_model_name("tta-tiny:random@v2")
    assert (spec.kind, spec.arch, spec.version, spec.base) == ("random", "tta-tiny", "v2", "tta-tiny:random")
    # An '@' inside a checkpoint path is part of the path.
    spec = parse_model_name("ViT-B-16:/data/run@3/b16.safetensors")
    assert spec.kind == "checkpoint" and spec.version is None
    with pytest.raises(ValueError, match="version"):
        parse_model_name("world-policy@bad version!")
    with pytest.raises(ValueError):
        parse_model_name("@ft-1")


def _tuned_state(scale: float) -> dict[str, torch.Tensor]:
    base = load_clip("tta-tiny:random", "cpu")
    return {k: v + scale for k, v in base.model.visual.state_dict().items()}


def test_a_stored_version_loads_by_name_and_leaves_the_base_alone(tmp_path):
    store = ModelStore(tmp_path)
    version = new_version_id()
    manifest = Manifest(base="tta-tiny:random", version=version, created_ms=1, source_job="job1",
                        label_set="pets", hyperparameters={"lr": 1e-4}, metrics={"holdout": 0.5})
    state = _tuned_state(0.01)
    folder = store.save(manifest, state)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "visual.safetensors"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["name"] == f"tta-tiny:random@{version}" and on_disk["label_set"] == "pets"
    assert store.manifest("tta-tiny:random", version) == manifest
    assert [m.name for m in store.list()] == [manifest.name]

    tuned = load_clip(manifest.name, "cpu", store_dir=tmp_path)
    assert tuned.name == manifest.name
    for key, value in tuned.model.visual.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not any(p.requires_grad for p in tuned.model.parameters())
    base = load_clip("tta-tiny:random", "cpu")
    assert not torch.equal(base.model.visual.conv1.weight, tuned.model.visual.conv1.weight)
    # The text side is the base's.
    assert torch.equal(base.model.token_embedding.weight, tuned.model.token_embedding.weight)
    with pytest.raises(FileExistsError):
        store.save(manifest, state)


def test_unknown_or_mismatched_versions_fail_clearly(tmp_path):
    with pytest.raises(UnknownModelError, match="no version 'nope'"):
        load_clip("tta-tiny:random@nope", "cpu", store_dir=tmp_path)
    store = ModelStore(tmp_path)
    # Weights of another architecture filed under tta-tiny: refused, not half-loaded.
    reward = load_clip("tta-tiny-reward:random", "cpu")
    store.save(Manifest(base="tta-tiny:random", version="wrong", created_ms=1),
               reward.model.visual.state_dict())
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_clip("tta-tiny:random@wrong", "cpu", store_dir=tmp_path)


def test_store_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TTA_MODEL_STORE", str(tmp_path))
    state = _tuned_state(0.02)
    ModelStore().save(Manifest(base="tta-tiny:random", version="env1", created_ms=1), state)
    tuned = load_clip("tta-tiny:random@env1", "cpu")
    assert torch.equal(tuned.model.visual.conv1.weight, state["conv1.weight"])
