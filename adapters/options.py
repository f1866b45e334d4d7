"""Method options: frozen dataclasses built from untrusted dicts with precise errors."""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from models.errors import InvalidOptionsError

T = TypeVar("T")


def _accepts(annotation: Any, value: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return False


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def parse_options(cls: type[T], raw: Mapping[str, Any] | None, method: str) -> T:
    """Build ``cls`` from ``raw``; unknown keys and wrong types raise InvalidOptionsError
    naming the field and what is allowed. Range checks live in each class's __post_init__."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InvalidOptionsError(
            f"unknown option(s) for method {method!r}: {', '.join(unknown)}; "
            f"allowed: {', '.join(fields) or '(none)'}",
            field=f"options.{unknown[0]}",
        )
    hints = typing.get_type_hints(cls)
    for name, value in raw.items():
        if not _accepts(hints[name], value):
            raise InvalidOptionsError(
                f"option {name!r} of method {method!r} must be {_describe(hints[name])}, "
                f"got {value!r}",
                field=f"options.{name}",
            )
        if hints[name] is float:
            raw[name] = float(value)
    try:
        return cls(**raw)
    except ValueError as exc:
        raise InvalidOptionsError(f"method {method!r}: {exc}", field="options") from exc


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"option {name!r} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class ViewOptions:
    """Options of every method that tunes on augmented views."""

    n_views: int = 64
    """Views of the test image: the clean one plus random resized crops."""
    selection: float = 0.1
    """Fraction of views kept by lowest entropy (0.1 of 64 keeps 6)."""

    def __post_init__(self) -> None:
        check_range("n_views", self.n_views, 1, 256)
        check_range("selection", self.selection, 0.0, 1.0)


@dataclass(frozen=True)
class PolicyGradientOptions(ViewOptions):
    """Options shared by the RLCF variants (published defaults)."""

    steps: int = 3
    """Optimisation steps (published: 3)."""
    weight_decay: float = 5e-4
    """AdamW weight decay."""
    sample_k: int = 3
    """Actions per view: the policy's top-K classes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steps", self.steps, 1, 64)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("sample_k", self.sample_k, 1, 100)


def options_schema(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and one-line doc of every option (for /v1/methods and --help)."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    return [
        {"name": f.name, "type": _describe(hints[f.name]), "default": f.default,
         "doc": docs.get(f.name, "")}
        for f in dataclasses.fields(cls)
    ]


def _field_docs(cls: type) -> dict[str, str]:
    """Read the docstring that follows each field in the class bodies (base classes first)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = following.value.value.strip()
    return docs
