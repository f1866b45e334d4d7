"""Resetting online method state (TDA's caches) of the caller's key and one label set."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from contract.catalog import get_spec, method_specs
from contract.errors import UnknownMethodError
from service.api.errors import ERROR_RESPONSES
from service.api.schemas import LABEL_SET_NAME
from service.api.tenancy import caller

router = APIRouter(prefix="/v1", tags=["method state"])
STATEFUL = [spec.name for spec in method_specs() if spec.stateful]


class ResetBody(BaseModel):
    method: str
    label_set: str | None
    reset: bool
    """False when there was no state to drop."""


@router.delete("/method-state/{method}", response_model=ResetBody,
               responses={status: ERROR_RESPONSES[status] for status in (401, 422, 503)})
async def reset_method_state(
    request: Request,
    method: Annotated[str, Path(description="a method that keeps state across requests",
                                json_schema_extra={"enum": STATEFUL})],
    label_set: Annotated[str | None, Query(pattern=LABEL_SET_NAME,
                                           description="the named label set whose state to drop")] = None,
    labels: Annotated[list[str] | None, Query(description="or the inline labels (repeated)")] = None,
) -> ResetBody:
    """Drop what an online method (``tda``) learned from this key's requests on one label set
    (named, or given inline as the requests gave it). Other keys' state is untouched."""
    spec = get_spec(method)
    if not spec.stateful:
        raise UnknownMethodError(f"method {method!r} keeps no state across requests", field="method")
    who = caller(request)
    state = who.state
    group = f"{method}:{who.scope(label_set, labels)}"
    dropped = await state.producer.client.delete(state.keys.method_state(group),
                                                 state.keys.method_state_applied(group))
    return ResetBody(method=method, label_set=label_set, reset=bool(dropped))
