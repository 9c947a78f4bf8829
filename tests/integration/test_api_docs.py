"""/docs and /redoc work offline: every script, style sheet and icon they load is
served by schedd itself, with its right type, and a Content-Security-Policy keeps the
pages to this origin."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from schedd.api.app import create_app
from schedd.db import create_database, migrate
from tests.apikit import ApiEnv, api_env, settings_for

TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    tmp = tmp_path_factory.mktemp("docs")
    db = create_database(f"sqlite:///{tmp / 'sched.db'}")
    migrate(db)
    try:
        with api_env(db, tmp) as env:
            yield env
    finally:
        db.dispose()


class Loads(HTMLParser):
    """What a page makes the browser fetch, and any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data-openapi-url"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def _loads(api: ApiEnv, path: str) -> Loads:
    response = api.client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    parser = Loads()
    parser.feed(response.text)
    return parser


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-init.js"}),
        ("/redoc", {"redoc.standalone.js"}),
    ],
)
def test_docs_pages_load_only_local_assets(api: ApiEnv, page: str, expected: set[str]) -> None:
    loads = _loads(api, page)
    assert loads.inline_scripts == 0, "an inline script would need 'unsafe-inline'"
    names = set()
    for url in loads.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
        response = api.client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        assert response.content, url
        if url == "/openapi.json":
            assert response.json()["info"]["title"] == "sched"
            continue
        suffix = url[url.rfind(".") :]
        assert response.headers["content-type"].startswith(TYPES[suffix]), url
        assert response.headers["x-content-type-options"] == "nosniff"
        names.add(url.rsplit("/", 1)[1])
    assert expected | {"favicon.png"} == names
    assert "/openapi.json" in loads.urls


def test_the_assets_are_swagger_ui_and_redoc(api: ApiEnv) -> None:
    bundle = api.client.get("/docs/assets/swagger-ui-bundle.js").text
    init = api.client.get("/docs/assets/swagger-init.js").text
    redoc = api.client.get("/docs/assets/redoc.standalone.js").text
    assert "SwaggerUIBundle" in bundle and "SwaggerUIBundle(" in init
    assert "Redoc" in redoc and len(bundle) > 100_000 and len(redoc) > 100_000
    assert ".swagger-ui" in api.client.get("/docs/assets/swagger-ui.css").text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_have_a_policy_that_keeps_them_local(api: ApiEnv, page: str) -> None:
    response = api.client.get(page)
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split(";")
        if directive.strip()
    }
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    sources = [source for values in policy.values() for source in values]
    assert not [s for s in sources if "://" in s or s in ("*", "http:", "https:")], policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/docs/assets/core.py", "/docs/assets/..%2f__init__.py", "/docs/assets/%2e%2e", "/docs/x"],
)
def test_only_the_listed_assets_are_served(api: ApiEnv, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"


def test_docs_are_not_in_the_openapi_document(api: ApiEnv) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def test_the_docs_answer_the_host_check(api: ApiEnv) -> None:
    response = api.client.get("/docs", headers={"Host": "rebound.example"})
    assert response.status_code == 400


def test_page_urls_follow_the_root_path(tmp_path: Path) -> None:
    """Behind a proxy that mounts the API under a prefix, the pages ask for their
    assets and the OpenAPI document under it."""

    async def fetch(app: FastAPI) -> str:
        transport = httpx.ASGITransport(app, root_path="/sched")
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return (await c.get("/docs")).text

    db = create_database("sqlite://")
    try:
        page = anyio.run(fetch, create_app(settings_for(tmp_path), db))
    finally:
        db.dispose()
    assert 'data-openapi-url="/sched/openapi.json"' in page
    assert '<script src="/sched/docs/assets/swagger-ui-bundle.js">' in page
