"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with
every script, style sheet and icon served by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a host
without Internet access and tell a third party who reads the docs. The assets come
from the ``fastapi-offline`` package (a dependency: it ships the swagger-ui-dist and
ReDoc bundles as package data; only its files are used). The pages carry no inline
script (Swagger UI is started by a small script of ours, ReDoc by its ``<redoc>``
element), so a strict ``Content-Security-Policy`` keeps them to this origin.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from schedd.errors import NotFound

ASSET_PACKAGE = "fastapi_offline"
ASSET_PREFIX = "/docs/assets/"
# The files of the package served, with their types (nosniff makes browsers hold
# scripts and style sheets to them).
PACKAGED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
SWAGGER_INIT = """\
// Starts Swagger UI on the element that names the OpenAPI document.
window.addEventListener("load", function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""
OWN = {"swagger-init.js": (SWAGGER_INIT.encode(), "text/javascript; charset=utf-8")}
# Swagger UI and ReDoc set style attributes and inject <style> elements (hence the
# inline styles), draw icons from data: URIs, and ReDoc builds its search index in a
# worker made from a blob: URL. Nothing else, and nothing from another origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
ASSET_HEADERS = {"Cache-Control": "public, max-age=86400"}


@cache
def _packaged(name: str) -> bytes:
    return resources.files(ASSET_PACKAGE).joinpath("static", name).read_bytes()


def asset(name: str) -> tuple[bytes, str]:
    """The bytes and content type of one documentation asset, or NotFound."""
    if name in OWN:
        return OWN[name]
    if name in PACKAGED:
        return _packaged(name), PACKAGED[name]
    raise NotFound(f"no such documentation asset: {name}")


def _page(request: Request, title: str, head: str, body: str) -> HTMLResponse:
    assets = html.escape(request.scope.get("root_path", "")) + ASSET_PREFIX
    head, body = (part.replace("{assets}", assets) for part in (head, body))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{assets}favicon.png">
{head}
</head>
<body>
{body}
</body>
</html>
"""
    return HTMLResponse(page, headers=PAGE_HEADERS)


def install(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app`` (created with
    ``docs_url=None, redoc_url=None``); none of them is in the OpenAPI document."""
    openapi_url = app.openapi_url or "/openapi.json"

    def spec_url(request: Request) -> str:
        return html.escape(request.scope.get("root_path", "") + openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _page(
            request,
            f"{app.title} - Swagger UI",
            '<link rel="stylesheet" href="{assets}swagger-ui.css">',
            f'<div id="swagger-ui" data-openapi-url="{spec_url(request)}"></div>\n'
            '<script src="{assets}swagger-ui-bundle.js"></script>\n'
            '<script src="{assets}swagger-init.js"></script>',
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _page(
            request,
            f"{app.title} - ReDoc",
            "",
            f'<redoc spec-url="{spec_url(request)}"></redoc>\n'
            '<script src="{assets}redoc.standalone.js"></script>',
        )

    @app.get(ASSET_PREFIX + "{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        content, media_type = asset(name)
        return Response(content, media_type=media_type, headers=ASSET_HEADERS)
