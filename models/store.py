"""The model store: fine-tuned versions of a base model, readable by every worker host.

``TTA_MODEL_STORE`` is a directory (a shared volume in compose; NFS, or a synced bucket mount,
when workers run on several hosts). Each version is a folder::

    <store>/<base>/<version>/visual.safetensors   the tuned visual-encoder state (fp32)
    <store>/<base>/<version>/manifest.json        base, created, source job, label set,
                                                  hyperparameters, metrics

The base model's own weights are never written. A version is named ``<base>@<version>``
(``world-policy@ft-3f2a...``); ``models.loading`` resolves such names through this store.
Writes go to a temporary folder that is renamed into place, so a reader never sees half a
version. Torch-free apart from ``save_visual`` / ``load_visual`` (imported lazily).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.errors import ModelLoadError, UnknownModelError
from contract.names import VERSION_PATTERN

log = logging.getLogger(__name__)
ENV_VAR = "TTA_MODEL_STORE"
WEIGHTS_FILE = "visual.safetensors"
MANIFEST_FILE = "manifest.json"


def default_store_dir() -> Path:
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else Path.home() / ".local" / "share" / "tta" / "models"


@dataclass(frozen=True)
class Manifest:
    base: str
    version: str
    created_ms: int
    tuned: str = "visual"
    """Which part of the model the weights file replaces."""
    source_job: str | None = None
    label_set: str | None = None
    label_source: str | None = None
    owner: str | None = None
    n_images: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    """The version this one was trained from (None: the base model)."""

    @property
    def name(self) -> str:
        return f"{self.base}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


def _base_dir_name(base: str) -> str:
    # Base names may contain ':' and '/' (ARCH:PATH); keep one flat, safe folder per base.
    return base.replace("/", "_").replace(":", "__").replace("\\", "_")


class ModelStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()

    def folder(self, base: str, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise UnknownModelError(f"model version {version!r} is not a valid version name",
                                    field="model")
        return self.root / _base_dir_name(base) / version

    def exists(self, base: str, version: str) -> bool:
        return (self.folder(base, version) / MANIFEST_FILE).is_file()

    def manifest(self, base: str, version: str) -> Manifest:
        path = self.folder(base, version) / MANIFEST_FILE
        if not path.is_file():
            raise UnknownModelError(f"no version {version!r} of {base!r} in the model store",
                                    field="model")  # (the store's path is not the caller's business)
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw.pop("name", None)
        return Manifest(**raw)

    def list(self, base: str | None = None) -> list[Manifest]:
        """Every stored version (of one base, or all), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob(f"*/*/{MANIFEST_FILE}"):
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                raw.pop("name", None)
                manifest = Manifest(**raw)
            except (OSError, ValueError, TypeError):
                continue  # a foreign or damaged folder is not a version
            if base is None or manifest.base == base:
                found.append(manifest)
        return sorted(found, key=lambda m: (m.created_ms, m.version))

    def save(self, manifest: Manifest, visual_state: dict[str, Any]) -> Path:
        """Write a new version (refuses to overwrite one: versions are immutable)."""
        from safetensors.torch import save_file

        target = self.folder(manifest.base, manifest.version)
        if target.exists():
            raise FileExistsError(f"version {manifest.name} already exists in {self.root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}-", dir=target.parent))
        try:
            state = {k: v.detach().float().contiguous().cpu() for k, v in visual_state.items()}
            save_file(state, str(staging / WEIGHTS_FILE))
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2),
                                                 encoding="utf-8")
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def load_visual(self, base: str, version: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        manifest = self.manifest(base, version)
        if manifest.tuned != "visual":
            raise ModelLoadError(f"version {manifest.name} tunes {manifest.tuned!r}, "
                                 "which this loader cannot apply", field="model")
        path = self.folder(base, version) / WEIGHTS_FILE
        try:
            return dict(load_file(str(path)))
        except (OSError, RuntimeError) as exc:
            log.warning("model store: could not read %s: %s", path, exc)
            raise ModelLoadError(f"could not read the weights of version {manifest.name}",
                                 field="model") from exc

    def delete(self, base: str, version: str) -> bool:
        target = self.folder(base, version)
        if not target.exists():
            return False
        shutil.rmtree(target)
        return True


def new_version_id(prefix: str = "ft") -> str:
    """A sortable, unique version name: ft-<UTC time>-<random>."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{os.urandom(3).hex()}"
