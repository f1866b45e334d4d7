"""What this deployment serves, health, readiness and metrics."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from contract.bundled import BUNDLED_MODELS
from contract.catalog import method_specs
from service.api import metrics
from service.api.state import app_state
from service.api.tenancy import caller

router = APIRouter()


@router.get("/v1/methods", tags=["info"])
async def methods(request: Request) -> dict[str, Any]:
    """Methods, their options (type, default, doc) and whether a live worker serves each."""
    state = caller(request).state
    served = {m for w in await state.producer.live_workers() for m in w["methods"]}
    return {"methods": [{**spec.describe(), "served": spec.name in served} for spec in method_specs()]}


@router.get("/v1/models", tags=["info"])
async def models(request: Request) -> dict[str, Any]:
    """The models live workers have loaded (with which of this key's fine-tuned versions each
    holds), the bundled ones, and this key's fine-tuned versions. Other keys' versions are
    never named."""
    who = caller(request)
    workers = await who.state.producer.live_workers()
    versions = await who.versions()
    return {
        "workers": [{**{k: w.get(k) for k in ("id", "model", "reward_model", "device", "methods", "busy")},
                     "resident_versions": [v for v in w.get("resident_versions", ()) if v in versions]}
                    for w in workers],
        "versions": [{k: m.get(k) for k in ("name", "base", "version", "created_ms", "source_job",
                                            "label_set", "label_source", "n_images", "metrics")}
                     for m in sorted(versions.values(), key=lambda m: m["created_ms"])],
        "bundled": [{"name": m.name, "arch": m.arch, "description": m.description}
                    for m in BUNDLED_MODELS],
    }


@router.get("/v1/quotas", tags=["info"])
async def quotas(request: Request) -> dict[str, Any]:
    """What this key holds of each kind of resource, against its quota, and how long each is
    kept."""
    return {"resources": await caller(request).usage()}


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The API process is alive (says nothing about Redis or workers)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "Redis down or no live worker"}})
async def readyz(request: Request, workers: bool = True) -> Response:
    """Ready when Redis answers and at least one worker's heartbeat is fresh; ``workers=false``:
    when Redis answers (the API's readiness probe where workers scale to zero: the API must
    take the jobs that scale them up)."""
    state = app_state(request)
    try:
        await state.producer.client.ping()
        live = await state.producer.live_workers()
    except redis.RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": False, "reason": str(exc)},
                            status_code=503, headers={"Retry-After": "2"})
    if not live and workers:
        return JSONResponse({"status": "unavailable", "redis": True, "workers": 0,
                             "reason": "no worker heartbeat"}, status_code=503,
                            headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready", "redis": True, "workers": len(live)})


@router.get("/metrics", tags=["health"], response_class=Response)
async def prometheus(request: Request) -> Response:
    """Prometheus exposition: HTTP traffic, queue depth and age, dead letters, live workers,
    each key's input-drift score."""
    state = app_state(request)
    try:
        body, content_type = await metrics.render(state.producer, state.settings.drift_limits,
                                                  state.auth.tenants)
    except redis.RedisError:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body, content_type = generate_latest(), CONTENT_TYPE_LATEST  # HTTP metrics still count
    return Response(body, media_type=content_type)
