"""Method implementations by name (the worker side of ``contract.catalog``).

Built-in methods are imported lazily from the import path in their spec; ``register`` adds a
new method (its spec goes into the catalog, so the API validates its options too).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from adapters.base import Method
from contract.catalog import MethodSpec, get_spec, register_spec

_FACTORIES: dict[str, Callable[[], Method]] = {}


def register(spec: MethodSpec, factory: Callable[[], Method]) -> None:
    register_spec(spec)
    _FACTORIES[spec.name] = factory


def create_method(name: str) -> Method:
    spec = get_spec(name)
    factory = _FACTORIES.get(name)
    if factory is None:
        module_name, _, class_name = spec.implementation.partition(":")
        factory = getattr(importlib.import_module(module_name), class_name)
        _FACTORIES[name] = factory
    method = factory()
    if method.name != name:
        raise TypeError(f"{spec.implementation} implements {method.name!r}, not {name!r}")
    return method
