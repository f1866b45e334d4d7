"""Methods by name. Built-in methods register on first use; others call ``register``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.base import Method
from adapters.options import options_schema
from models.errors import UnknownMethodError

_FACTORIES: dict[str, Callable[[], Method]] = {}


def register(name: str, factory: Callable[[], Method]) -> None:
    if name in _FACTORIES:
        raise ValueError(f"method {name!r} is already registered")
    _FACTORIES[name] = factory


def _load_builtins() -> None:
    if _FACTORIES:
        return
    from adapters.rlcf import RLCFPrompt
    from adapters.rlcf_tune import RLCFTune
    from adapters.tpt import TPT
    from adapters.zeroshot import ZeroShot

    for cls in (ZeroShot, TPT, RLCFPrompt, RLCFTune):
        register(cls.name, cls)


def method_names() -> list[str]:
    _load_builtins()
    return list(_FACTORIES)


def create_method(name: str) -> Method:
    _load_builtins()
    if name not in _FACTORIES:
        raise UnknownMethodError(
            f"unknown method {name!r}; allowed: {', '.join(_FACTORIES)}", field="method"
        )
    return _FACTORIES[name]()


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    needs_reward_model: bool
    options: list[dict[str, Any]]


def list_methods() -> list[MethodInfo]:
    infos = []
    for name in method_names():
        method = create_method(name)
        infos.append(MethodInfo(
            name=name, description=method.description,
            needs_reward_model=method.needs_reward_model,
            options=options_schema(method.options_type),
        ))
    return infos
