"""Parsing JSON from clients: bounded nesting, clear 4xx errors, one pydantic-error mapping.

Python's json module recurses, so a body nested 10,000 levels deep raises RecursionError (a
500 if uncaught), and a merely deep one can still blow the stack later (pydantic, json.dumps in
the worker). Bodies are therefore refused beyond ``MAX_JSON_DEPTH`` levels, before anything
else looks at them.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from contract.errors import InvalidInputError, MalformedRequestError

MAX_JSON_DEPTH = 32
Model = TypeVar("Model", bound=BaseModel)


class NonFiniteNumberError(ValueError):
    """Python's json accepts NaN and Infinity; JSON (and every range check) does not."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumberError(name)


def json_depth(value: Any) -> int:
    """Containers nested in a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, outer = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, outer + 1)
            stack.extend((child, outer + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(text: str | bytes, field: str) -> Any:
    """Parsed JSON, or MalformedRequestError naming ``field`` (bad syntax, bad UTF-8, too deep)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        if isinstance(exc, NonFiniteNumberError):
            raise MalformedRequestError(f"{field} contains {exc.args[0]}, which JSON does not allow",
                                        field=field) from exc
        raise MalformedRequestError(f"{field} is not valid JSON: {exc}", field=field) from exc
    except RecursionError as exc:
        raise MalformedRequestError(f"{field} is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                                    field=field) from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise MalformedRequestError(f"{field} is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                                    field=field)
    return value


async def read_json_body(request: Request, model: type[Model]) -> Model:
    """The request body validated as ``model``; errors name the first offending field."""
    return validate_as(model, parse_json(decoded(await request.body(), request.headers.get("content-type")),
                                         "body"))


def decoded(body: bytes, content_type: str | None) -> bytes | str:
    """The body as the ``charset`` of its Content-Type says (JSON is UTF-8 unless a client
    declares otherwise: a body declared ``charset=latin-1`` is read as Latin-1, not as UTF-8)."""
    charset = ""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset in ("", "utf-8", "utf8"):
        return body
    try:
        return body.decode(charset)
    except LookupError as exc:
        raise MalformedRequestError(f"unknown charset {charset!r} in Content-Type",
                                    field="Content-Type") from exc
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(f"the body is not valid {charset}", field="body") from exc


def validate_as(model: type[Model], raw: Any) -> Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInputError(f"{field}: {first['msg']}", field=field) from exc
