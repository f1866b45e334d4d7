"""``/docs``: the OpenAPI reference (Swagger UI) served from files installed with the API, so it
renders without the internet. FastAPI's own page loads Swagger UI from a CDN, which a machine
behind a firewall (or this one) cannot reach: a blank page.

The assets are Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes) as the
``fastapi-swagger`` package ships them; only its files are used.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS = resources.files("fastapi_swagger").joinpath("resources")
MEDIA_TYPES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}
router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="CLIP TTA service: API reference",
                               swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs/assets/swagger-ui.css",
                               swagger_favicon_url="/docs/assets/favicon-32x32.png")


@router.get("/docs/assets/{name}")
async def asset(name: str) -> Response:
    if name not in MEDIA_TYPES:
        return Response(status_code=404)
    return Response(ASSETS.joinpath(name).read_bytes(), media_type=MEDIA_TYPES[name],
                    headers={"Cache-Control": "public, max-age=86400"})


def install(app: FastAPI) -> None:
    """Serve ``/docs`` from the installed files (the app is created with ``docs_url=None``)."""
    app.router.routes.extend(router.routes)
