"""Input drift of the caller's label sets: read the reports, reset one (``service.queue.drift``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from service.api.errors import ERROR_RESPONSES
from service.api.schemas import LABEL_SET_NAME
from service.api.tenancy import caller
from service.queue.drift import ALERT_THRESHOLD

router = APIRouter(prefix="/v1", tags=["drift"])


class DriftStatistic(BaseModel):
    reference: float
    window: float
    z: float
    """(window - reference) / the reference's spread (floored) x sqrt(window size)."""


class DriftScope(BaseModel):
    scope: str
    """The label set's name, or the digest of the inline labels the requests gave."""
    score: float | None
    """The largest |z| of the statistics; null until the reference and the window are full."""
    alerting: bool
    reference_n: int
    window_n: int
    statistics: dict[str, DriftStatistic]
    """confidence and entropy of the zero-shot answer, changed (adaptation changed the label),
    escalated (auto went past zero-shot; auto's answers only)."""
    label_distance: float | None
    """Total-variation distance of the zero-shot label distributions (not scored)."""


class DriftBody(BaseModel):
    threshold: float
    """A scope whose score passes it is ``alerting`` (the shipped alert rule uses it too)."""
    reference_size: int
    window_size: int
    scopes: list[DriftScope]


class DriftResetBody(BaseModel):
    scope: str
    reset: bool
    """False when nothing was kept for it."""


@router.get("/drift", response_model=DriftBody,
            responses={status: ERROR_RESPONSES[status] for status in (401, 503)})
async def list_drift(request: Request) -> dict[str, Any]:
    """Each of the caller's label sets (or inline label lists) with answers: its latest answers
    (the window) against its first ones (the reference), statistic by statistic, and a score."""
    who = caller(request)
    limits = who.state.settings.drift_limits
    return {"threshold": ALERT_THRESHOLD, "reference_size": limits.reference_size,
            "window_size": limits.window_size,
            "scopes": [{"scope": scope, **report.to_dict()} for scope, report in await who.drift()]}


@router.delete("/drift", response_model=DriftResetBody,
               responses={status: ERROR_RESPONSES[status] for status in (401, 422, 503)})
async def reset_drift(
    request: Request,
    label_set: Annotated[str | None, Query(pattern=LABEL_SET_NAME,
                                           description="the label set whose drift lists to drop")] = None,
    labels: Annotated[list[str] | None, Query(description="or the inline labels (repeated)")] = None,
) -> DriftResetBody:
    """Forget what was observed for one label set (after a deliberate change of inputs): its
    next answers form a new reference."""
    who = caller(request)
    scope = who.scope(label_set, labels)
    return DriftResetBody(scope=scope.partition("|")[2], reset=await who.reset_drift(scope))
