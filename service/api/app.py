"""The FastAPI application: ``create_app()`` (uvicorn ``--factory``) wires settings, Redis,
auth, limits, metrics and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI

from service.api import docs_page, errors, playground, seed_label_sets
from service.api.auth import Authenticator, load_key_file
from service.api.body_limit import BodyLimitMiddleware
from service.api.event_hub import EventHub
from service.api.label_sets import router as label_sets_router
from service.api.metrics import HTTPMetricsMiddleware
from service.api.openapi import complete
from service.api.routes_drift import router as drift_router
from service.api.routes_finetunes import router as finetunes_router
from service.api.routes_info import router as info_router
from service.api.routes_jobs import router as jobs_router
from service.api.routes_method_state import router as method_state_router
from service.api.routes_rectifications import router as rectifications_router
from service.api.security_headers import SecurityHeadersMiddleware
from service.api.state import AppState
from service.queue.connection import RedisTarget
from service.queue.keys import Keys
from service.queue.producer import Producer, ReplicaWait
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)
POOL_WAIT_S = 10

DESCRIPTION = """Test-time adaptation for CLIP classifiers. Submit images with candidate labels
and a method (`zeroshot`, `tpt`, `rlcf`, `rlcf-tune`, ...); a worker adapts the CLIP to each image
and returns corrected predictions, streaming progress as server-sent events.

Authentication: `Authorization: Bearer <key>` when the deployment has keys. Errors are JSON
`{"code", "message", "field"}`; 429/503 carry `Retry-After`."""


def redis_client(target: RedisTarget, max_connections: int) -> aioredis.Redis:
    """The pool for short commands. Bounded and blocking: under a burst, requests wait briefly
    for a connection instead of failing (nothing holds one for long: waiting for events goes
    through the event hub's own connection)."""
    return target.async_client(max_connections=max_connections, blocking_s=POOL_WAIT_S,
                               health_check_interval=10)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, added to the app itself. ``include_router`` (FastAPI 0.16x) keeps
    the router as a branch that every request walks and resolves again: about 40 us of the
    API's time per request here, by ``/healthz``. A route carries its router's prefix and tags
    already, so the OpenAPI schema is the same either way."""
    app.router.routes.extend(router.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    target = settings.redis_target
    if not target.configured:
        raise RuntimeError("neither TTA_REDIS_URL nor TTA_REDIS_SENTINELS is set (`tta serve` sets "
                           "TTA_REDIS_URL for its private Redis)")
    keys = load_key_file(settings.api_keys_file) if settings.api_keys_file else None
    auth = Authenticator(keys)
    if not auth.enabled:
        log.warning("no TTA_API_KEYS_FILE: authentication is off (every caller is 'anonymous')")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client(target, settings.redis_max_connections)
        prefix = Keys(settings.redis_prefix)
        hub = EventHub(target, prefix)
        hub.start()
        app.state.tta = AppState(settings=settings, auth=auth, keys=prefix, hub=hub,
                                 producer=Producer(client, prefix, ttl_s=settings.job_ttl_s,
                                                   replica_wait=ReplicaWait(settings.redis_wait_replicas,
                                                                            settings.redis_wait_timeout_ms)))
        seeding = asyncio.create_task(seed_label_sets.store_until_done(client, prefix))
        yield
        seeding.cancel()
        await hub.close()
        await client.aclose()

    app = FastAPI(title="CLIP test-time adaptation service", version="0.4.3",
                  description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None)
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HTTPMetricsMiddleware)
    docs_page.install(app)  # /docs from installed files: it works offline
    for router in (jobs_router, label_sets_router, rectifications_router, method_state_router,
                   drift_router, finetunes_router, info_router, playground.router):
        add_routes(app, router)
    playground.mount_static(app)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(original_openapi(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
