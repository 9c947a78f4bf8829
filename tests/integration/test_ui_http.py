"""The dashboard over real HTTP (uvicorn, a real database): sign-in, the session cookie,
CSRF and origin checks, scopes enforced on the server, every page rendering, and the
headers every page carries. The browser tests (tests/e2e/test_ui_browser.py) drive the
same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from sqlmodel import select

from schedd.api.app import api_routes, create_app
from schedd.db import Database, create_database, migrate
from schedd.models import AuditEntry, TaskRun
from schedd.services import workers
from schedd.ui import viewer
from schedd.ui.security import CSP, SESSION_COOKIE
from tests import services
from tests.apikit import ApiEnv, RecordingBroker, api_env, settings_for, task_body

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.external_service)],
)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiEnv]:
    """One server and database per backend for the whole module (tests use their own
    task names): a server per test would cost more than the tests."""
    tmp_path = tmp_path_factory.mktemp("ui")
    with ExitStack() as stack:
        if request.param == "sqlite":
            database = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
            migrate(database)
        else:
            template = request.getfixturevalue("pg_template")
            url = stack.enter_context(services.fresh_pg_database(template=template))
            database = create_database(url, max_connections=5)
        stack.callback(database.dispose)
        yield stack.enter_context(api_env(database, tmp_path, RecordingBroker()))


@pytest.fixture
def db(api: ApiEnv) -> Database:
    return api.db


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def browser(api: ApiEnv) -> httpx.Client:
    return httpx.Client(base_url=str(api.client.base_url), timeout=30)


def sign_in(client: httpx.Client, key: str, next_path: str = "/ui/") -> httpx.Response:
    form = client.get("/ui/signin", params={"next": next_path})
    assert form.status_code == 200
    return client.post(
        "/ui/signin",
        data={"csrf": csrf_of(form.text), "api_key": key, "next": next_path},
    )


def make_task(api: ApiEnv, name: str = "backup", **fields: object) -> int:
    made = api.client.post("/api/tasks", json=task_body(name, **fields), headers=api.admin)
    assert made.status_code == 201, made.text
    task_id: int = made.json()["id"]
    return task_id


def test_pages_need_a_session_and_send_the_browser_to_sign_in(api: ApiEnv) -> None:
    with browser(api) as client:
        page = client.get("/ui/tasks?q=x")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/ui/signin?next=%2Fui%2Ftasks%3Fq%3Dx")


def test_signing_in_sets_an_httponly_strict_cookie_and_returns_to_the_page(api: ApiEnv) -> None:
    with browser(api) as client:
        done = sign_in(client, api.admin_key, "/ui/tasks")
        assert done.status_code == 303
        assert done.headers["location"] == "/ui/tasks"
        cookie = next(
            h for h in done.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        assert "Path=/ui/" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        assert api.admin_key not in cookie
        page = client.get("/ui/tasks")
        assert page.status_code == 200
        assert "<h1>Tasks</h1>" in page.text


def test_a_wrong_key_is_refused_with_a_page_and_no_session(api: ApiEnv) -> None:
    with browser(api) as client:
        done = sign_in(client, "scheduler_" + "x" * 32)
        assert done.status_code == 401
        assert "invalid or revoked API key" in done.text
        assert SESSION_COOKIE not in done.headers.get("set-cookie", "")
        assert client.get("/ui/").status_code == 303


def test_sign_in_without_the_forms_csrf_token_is_refused(api: ApiEnv) -> None:
    with browser(api) as client:
        client.get("/ui/signin")
        done = client.post("/ui/signin", data={"csrf": "0" * 64, "api_key": api.admin_key})
        assert done.status_code == 403
        assert SESSION_COOKIE not in done.headers.get("set-cookie", "")


def test_every_page_renders_for_an_admin(api: ApiEnv) -> None:
    task_id = make_task(api, "nightly", schedule="0 0 2 * * *", timezone="Europe/Berlin")
    make_task(api, "report", dependencies=[task_id], tags=["finance"])
    run = api.client.post(f"/api/tasks/{task_id}/trigger", headers=api.admin).json()
    with browser(api) as client:
        sign_in(client, api.admin_key)
        for path, expected in [
            ("/ui/", "Runs per hour"),
            ("/ui/tasks?q=night", "nightly"),
            ("/ui/tasks?tag=finance", "report"),
            (f"/ui/tasks/{task_id}", "At 02:00, every day (Europe/Berlin)"),
            (f"/ui/runs/{run['id']}", f"Run {run['id']} of"),
            ("/ui/workers", "Workers"),
            ("/ui/timeline?hours=3", "Timeline"),
            ("/ui/events?level=info", "System events"),
            ("/ui/audit?action=task.trigger", "task.trigger"),
        ]:
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert expected in page.text, path
            assert page.headers["content-security-policy"] == CSP
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["cache-control"] == "no-store"
            # No inline script or style: the CSP would block them.
            assert "<script>" not in page.text and "style=" not in page.text, path
            assert "<style" not in page.text, path


def test_the_task_page_shows_ten_fire_times_and_the_dependency_graph(api: ApiEnv) -> None:
    upstream = make_task(api, "extract", schedule="*/30 * * * *")
    middle = make_task(api, "transform", dependencies=[upstream])
    make_task(api, "load", dependencies=[middle])
    with browser(api) as client:
        sign_in(client, api.admin_key)
        page = client.get(f"/ui/tasks/{upstream}").text
        assert "Next 10 fire times" in page
        assert "Every 30 minutes" in page
        graph = client.get(f"/ui/tasks/{middle}").text
        for name in ("extract", "transform", "load"):
            assert f">{name}</text>" in graph


def test_trigger_with_arguments_runs_through_the_service(api: ApiEnv, db: Database) -> None:
    task_id = make_task(api, "echoer", command='echo "$@"')
    with browser(api) as client:
        sign_in(client, api.admin_key)
        page = client.get(f"/ui/tasks/{task_id}")
        done = client.post(
            f"/ui/tasks/{task_id}/trigger",
            data={"csrf": csrf_of(page.text), "arguments": "one\ntwo words\n"},
        )
        assert done.status_code == 303
        run_id = int(re.search(r"/ui/runs/(\d+)", done.headers["location"]).group(1))  # type: ignore[union-attr]
    with db.session() as session:
        run = session.get(TaskRun, run_id)
        assert run is not None and run.arguments == ["one", "two words"]
        assert run.trigger == "manual"


def test_a_forged_post_without_or_with_a_wrong_csrf_token_changes_nothing(
    api: ApiEnv, db: Database
) -> None:
    task_id = make_task(api, "victim")
    with browser(api) as client:
        sign_in(client, api.admin_key)
        missing = client.post(f"/ui/tasks/{task_id}/pause", data={})
        wrong = client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": "f" * 64})
        assert missing.status_code == 403 and wrong.status_code == 403
        assert "CSRF" in wrong.text
        # Another session's token is no good either.
        with browser(api) as other:
            sign_in(other, api.admin_key)
            theirs = csrf_of(other.get(f"/ui/tasks/{task_id}").text)
        stolen = client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": theirs})
        assert stolen.status_code == 403
        # A right token from another origin is refused too.
        token = csrf_of(client.get(f"/ui/tasks/{task_id}").text)
        foreign = client.post(
            f"/ui/tasks/{task_id}/pause",
            data={"csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
    task = api.client.get(f"/api/tasks/{task_id}", headers=api.admin).json()
    assert task["status"] == "active"
    with db.session() as session:
        denied = len(session.exec(select(AuditEntry).where(AuditEntry.outcome == "denied")).all())
    assert denied >= 3


def test_a_read_only_key_sees_no_actions_and_its_posts_are_refused(api: ApiEnv) -> None:
    task_id = make_task(api, "readonly-view")
    run = api.client.post(f"/api/tasks/{task_id}/trigger", headers=api.admin).json()
    reader = api.key("task.read", name="viewer")
    with browser(api) as client:
        sign_in(client, reader)
        page = client.get(f"/ui/tasks/{task_id}").text
        assert "Trigger now" not in page and "Pause" not in page
        run_page = client.get(f"/ui/runs/{run['id']}").text
        assert "Cancel run" not in run_page
        nav = client.get("/ui/").text
        assert "/ui/workers" not in nav and "/ui/audit" not in nav
        assert client.get("/ui/workers").status_code == 403
        assert client.get("/ui/audit").status_code == 403
        token = csrf_of(page)  # the sign-out form's token: valid for this session
        refused = client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": token})
        assert refused.status_code == 403
        assert "task.execute" in refused.text
    assert api.client.get(f"/api/tasks/{task_id}", headers=api.admin).json()["status"] == "active"


def test_pause_resume_cancel_rerun_and_drain(api: ApiEnv, db: Database) -> None:
    task_id = make_task(api, "operated")
    with db.session() as session:
        workers.register(
            session,
            worker_id="w-ui",
            hostname="host",
            ip_address=None,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=2,
            pid=1,
            version="test",
            stale_after=30,
        )
    with browser(api) as client:
        sign_in(client, api.admin_key)
        token = csrf_of(client.get("/ui/").text)
        assert client.post(f"/ui/tasks/{task_id}/pause", data={"csrf": token}).status_code == 303
        assert "Resume" in client.get(f"/ui/tasks/{task_id}").text
        assert client.post(f"/ui/tasks/{task_id}/resume", data={"csrf": token}).status_code == 303
        made = client.post(f"/ui/tasks/{task_id}/trigger", data={"csrf": token})
        run_path = made.headers["location"].split("?")[0]
        run_id = int(run_path.rsplit("/", 1)[1])
        assert client.post(f"{run_path}/cancel", data={"csrf": token}).status_code == 303
        assert "Run again" in client.get(run_path).text
        again = client.post(f"{run_path}/retry", data={"csrf": token})
        assert again.status_code == 303 and f"/ui/runs/{run_id}" not in again.headers["location"]
        drained = client.post("/ui/workers/w-ui/drain", data={"csrf": token})
        assert drained.status_code == 303
        assert "draining" in client.get("/ui/workers").text
        conflict = client.post(f"{run_path}/cancel", data={"csrf": token})
        assert conflict.status_code == 409
        assert "already ended" in conflict.text
    api_run = api.client.get(f"/api/runs/{run_id}", headers=api.admin).json()
    assert api_run["status"] == "cancelled"


def test_signing_out_ends_the_session(api: ApiEnv) -> None:
    with browser(api) as client:
        sign_in(client, api.admin_key)
        token = csrf_of(client.get("/ui/").text)
        out = client.post("/ui/signout", data={"csrf": token})
        assert out.status_code == 303
        assert client.get("/ui/").status_code == 303


def test_a_revoked_key_ends_its_dashboard_sessions(api: ApiEnv) -> None:
    key = api.key("task.read", name="short")
    key_id = api.client.get("/api/whoami", headers=api.auth(key)).json()["key_id"]
    with browser(api) as client:
        sign_in(client, key)
        assert client.get("/ui/tasks").status_code == 200
        api.client.delete(f"/api/apikeys/{key_id}", headers=api.admin)
        assert client.get("/ui/tasks").status_code == 303


def test_static_files_are_packaged_and_nothing_else_is_served(api: ApiEnv) -> None:
    with browser(api) as client:
        css = client.get("/ui/static/ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert client.get("/ui/static/ui.js").status_code == 200
        assert client.get("/ui/static/..%2Fsecurity.py").status_code == 404
        assert client.get("/ui/static/templates").status_code == 404


def test_the_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    db = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
    try:
        app = create_app(settings_for(tmp_path, api={"ui_enabled": False}), db)
        paths = [getattr(route, "path", "") for route in app.routes]
        assert "/api/tasks" in paths
        assert not [path for path in paths if path.startswith("/ui")]
    finally:
        db.dispose()


UI_OPEN = {"/ui", "/ui/signin", "/ui/static/{name}"}


def _depends_on(dependant: Dependant, call: object) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def test_every_dashboard_route_needs_a_session(tmp_path: Path) -> None:
    db = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
    try:
        app = create_app(settings_for(tmp_path), db)
        ui_routes = [r for r in api_routes(app) if r.path.startswith("/ui")]
        assert len(ui_routes) > 15
        for route in ui_routes:
            if route.path in UI_OPEN:
                continue
            assert _depends_on(route.dependant, viewer._current), route.path
            if "POST" in route.methods and route.path != "/ui/signin":
                assert _depends_on(route.dependant, viewer._acting), route.path
    finally:
        db.dispose()
