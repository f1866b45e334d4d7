"""The web playground: a static page at ``/`` (plain HTML, CSS and JavaScript modules under
``static/``, no build step) that calls the public API like any other client, and the sample
scenes it offers (pre-rendered by ``python -m world.playground_assets``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
router = APIRouter()


@cache
def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((STATIC_DIR / "samples" / "manifest.json").read_text())
    return manifest


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The playground (needs no key: the page asks for one and keeps it in the browser)."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1/samples", tags=["info"])
async def samples() -> dict[str, Any]:
    """Sample scenes from the offline world's test domains (bundled PNGs, no key needed): each
    with its domain, true class and what zeroshot and rlcf answered with the bundled models."""
    return _manifest()


def mount_static(app: FastAPI) -> None:
    """The page's static files (its routes, ``router``, are added with the others)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
