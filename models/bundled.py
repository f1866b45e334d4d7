"""Models that ship with the project (checkpoints inside the package, no download).

A bundled model is an open_clip architecture config (``models/configs/*.json``, registered
with open_clip at import) plus a safetensors checkpoint in ``models/weights/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract.bundled import BUNDLED_MODELS

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
WEIGHTS_DIR = PACKAGE_DIR / "weights"


@dataclass(frozen=True)
class BundledModel:
    name: str
    arch: str
    """open_clip architecture name (one of the configs in ``models/configs``)."""
    checkpoint: Path
    description: str


_BUNDLED: dict[str, BundledModel] = {}


def register_bundled(model: BundledModel) -> None:
    _BUNDLED[model.name] = model


def get_bundled(name: str) -> BundledModel:
    return _BUNDLED[name]


def bundled_names() -> frozenset[str]:
    return frozenset(_BUNDLED)


def list_bundled() -> list[BundledModel]:
    return sorted(_BUNDLED.values(), key=lambda m: m.name)


for _info in BUNDLED_MODELS:
    register_bundled(BundledModel(name=_info.name, arch=_info.arch, checkpoint=WEIGHTS_DIR / _info.checkpoint,
                                  description=_info.description))
