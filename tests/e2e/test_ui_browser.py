"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium
through the system chromedriver (nothing is downloaded), against a real `schedd run`
(all roles, embedded SQLite, a real worker running shell tasks).

One browser session walks the operator's path: sign in, find a task, trigger it with an
argument and watch its output arrive while it runs, pause it, cancel a long run, drain
the worker; a read-only key sees no action and forged POSTs are refused. Every page is
saved as a screenshot under the test's output directory (and the overview and a task
page into ``$SCHED_UI_SCREENSHOTS`` when set: that is how docs/ gets them). After each
page the test fails if the browser requested anything from another origin or logged
an error (a Content-Security-Policy violation is logged as one).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests import services
from tests.schedctlserver import Server, running_schedd

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 20.0

pytestmark = pytest.mark.slow


def _browser() -> WebDriver:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        services.unavailable(
            "Chromium", "install Debian's chromium and chromium-driver (.ci/run does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


class Session:
    """The browser, the server, and the checks run after every page."""

    def __init__(self, driver: WebDriver, server: Server, shots: Path) -> None:
        self.driver = driver
        self.server = server
        self.shots = shots
        self.docs = os.environ.get("SCHED_UI_SCREENSHOTS")

    def go(self, path: str) -> None:
        self.driver.get(self.server.url + path)
        self.settle()

    def settle(self) -> None:
        self.wait(lambda: self.driver.execute_script("return document.readyState") == "complete")

    def wait(self, condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except (StaleElementReferenceException, NoSuchElementException):
                value = None  # the page is being (re)loaded under us
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
            time.sleep(0.05)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return str(self.find("body").text)

    def click(self, css: str) -> None:
        self.find(css).click()
        self.settle()

    def button(self, label: str) -> WebElement:
        found = [b for b in self.all("button") if b.text.strip() == label]
        if not found:
            raise NoSuchElementException(f"no button {label!r} on {self.driver.current_url}")
        return found[0]

    def press(self, label: str) -> None:
        """Click the button ``label`` (again if the page changed under the click)."""

        def click() -> bool:
            self.button(label).click()
            return True

        self.wait(click, what=f"the button {label!r}")
        self.settle()

    def check_page(self, name: str) -> None:
        """Screenshot, then fail on requests to other origins and on console errors."""
        self.settle()
        # The whole page, not only the window.
        size = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = self.driver.execute_cdp_cmd(  # type: ignore[attr-defined]
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            },
        )
        (self.shots / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
        if self.docs and name in ("overview", "task"):
            shutil.copy(self.shots / f"{name}.png", Path(self.docs) / f"ui-{name}.png")
        self.check_logs(name)

    def check_logs(self, name: str) -> None:
        foreign = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                url = message["params"]["request"]["url"]
                if not url.startswith((self.server.url + "/", "data:", "about:")):
                    foreign.append(url)
        assert foreign == [], f"{name}: requests outside the server: {foreign}"
        errors = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], f"{name}: console errors (CSP violations included): {errors}"

    def post(self, path: str, body: str) -> int:
        """A POST from the page's own origin with the session's cookie (what a forged
        form or script would send), returning the status."""
        status: int = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', body: arguments[1], credentials:"
            " 'same-origin', headers: {'Content-Type': 'application/x-www-form-urlencoded'}})"
            ".then(r => done(r.status)).catch(e => done(-1));",
            path,
            body,
        )
        # The browser logs the refusal it was sent to provoke; nothing else may appear.
        for entry in self.driver.get_log("browser"):
            expected = f"{path} - Failed to load resource" in entry["message"] and status >= 400
            assert expected, f"unexpected console entry: {entry['message']}"
        return status

    def sign_in(self, key: str) -> None:
        self.go("/ui/")  # without a session: sends the browser to sign in
        self.wait(lambda: "/ui/signin" in self.driver.current_url, what="the sign-in page")
        self.find("#api_key").send_keys(key)
        self.press("Sign in")

    def sign_out(self) -> None:
        self.find(".who button").click()
        self.settle()
        self.wait(lambda: "/ui/signin" in self.driver.current_url, what="signed out")


def finished(s: Session, status: str) -> bool:
    """The run page shows ``status`` after the reload that follows the run's end (the
    live view is gone)."""
    return s.find("#run-status").text.strip() == status and not s.all("pre[data-follow]")


def api(server: Server) -> httpx.Client:
    key = (server.data_dir / "admin.key").read_text().strip()
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def make(client: httpx.Client, name: str, command: str, **fields: Any) -> int:
    made = client.post(
        "/api/tasks", json={"name": name, "executor": "shell", "command": command, **fields}
    )
    assert made.status_code == 201, made.text
    task_id: int = made.json()["id"]
    return task_id


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The browser starts while the server does (each takes seconds)."""
    shots = tmp_path_factory.mktemp("screenshots")
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(_browser)
        try:
            with running_schedd(
                tmp_path_factory.mktemp("ui-browser"), {"SCHEDD_WORKER__HEARTBEAT_INTERVAL": "1"}
            ) as server:
                yield Session(starting.result(), server, shots)
        finally:
            with contextlib.suppress(Exception):
                starting.result().quit()


def test_an_operator_works_through_the_dashboard(session: Session) -> None:
    server = session.server
    with api(server) as client:
        extract = make(
            client,
            "extract",
            "echo rows",
            schedule="0 */15 * * * *",
            timezone="Europe/Berlin",
            tags=["etl"],
        )
        greet = make(
            client,
            "greet",
            'echo "hello $1"; for i in 1 2 3; do sleep 2; echo "tick $i"; done',
            schedule="0 0 6 * * 1-5",
            timezone="America/New_York",
            dependencies=[extract],
            tags=["etl", "demo"],
            description="Says hello, then counts to three.",
        )
        make(client, "report", "echo report", dependencies=[greet], tags=["etl"])
        sleeper = make(client, "sleeper", "echo started; sleep 60", tags=["demo"])
        flaky = make(client, "flaky", "echo trying; exit 3", tags=["demo"])
        for _ in range(3):
            client.post(f"/api/tasks/{flaky}/trigger")
            client.post(f"/api/tasks/{extract}/trigger")
        reader_key = client.post(
            "/api/apikeys",
            json={"name": "viewer", "scopes": ["task.read", "worker.read", "system.read"]},
        ).json()["key"]
    admin_key = (server.data_dir / "admin.key").read_text().strip()
    s = session

    # A read-only key: pages, but no action anywhere, and its POSTs are refused.
    s.sign_in(reader_key)
    s.wait(lambda: "Overview" in s.text(), what="the overview")
    s.go(f"/ui/tasks/{greet}")
    assert s.all("form[method=post]") == s.all(".who form")  # only sign-out
    assert "Trigger now" not in s.text() and "Pause" not in s.text()
    s.check_page("task-read-only")
    token = s.find(".who input[name=csrf]").get_attribute("value")
    assert s.post(f"/ui/tasks/{greet}/pause", f"csrf={token}") == 403
    s.go("/ui/workers")
    assert not [b for b in s.all("button") if b.text == "Drain"]
    s.sign_out()
    s.check_page("signin")

    # The administrator.
    s.sign_in(admin_key)
    s.wait(lambda: "Runs per hour" in s.text(), what="the overview")
    # A forged POST (no token, a wrong token) changes nothing.
    assert s.post(f"/ui/tasks/{greet}/pause", "") == 403
    assert s.post(f"/ui/tasks/{greet}/pause", "csrf=" + "0" * 64) == 403
    s.check_page("overview-early")

    # Find the task.
    s.go("/ui/tasks")
    s.find("#q").send_keys("gre")
    s.press("Filter")
    links = [a for a in s.all("table.tasks a") if a.text == "greet"]
    assert links and "sleeper" not in s.find("table.tasks").text
    s.check_page("tasks-search")
    links[0].click()
    s.settle()
    assert "Monday through Friday" in s.text()
    assert "America/New_York" in s.text()

    # Trigger with an argument and watch the output arrive while it runs.
    s.find("#arguments").send_keys("world")
    s.press("Trigger now")
    s.wait(lambda: "/ui/runs/" in s.driver.current_url, what="the run page")
    seen_live = s.wait(
        lambda: (
            "tick 1" in s.find("#output").text and s.find("#run-status").text.strip() == "running"
        ),
        what="output while the run is running",
    )
    assert seen_live
    assert "hello world" in s.find("#output").text
    s.check_page("run-live")
    s.wait(lambda: finished(s, "completed"), what="completion")
    assert "tick 3" in s.find("#output").text
    s.check_page("run")

    # The task page with its history, then pause it.
    s.go(f"/ui/tasks/{greet}")
    s.check_page("task")
    s.press("Pause")
    s.wait(lambda: "task paused" in s.text(), what="the pause notice")
    assert s.button("Resume")
    assert "paused" in s.find("h1").text
    s.check_page("task-paused")

    # Cancel a long run.
    s.go(f"/ui/tasks/{sleeper}")
    s.press("Trigger now")
    s.wait(lambda: "started" in s.find("#output").text, what="the long run to start")
    s.press("Cancel run")
    s.wait(lambda: finished(s, "cancelled"), what="the cancel")
    s.check_page("run-cancelled")

    # The other pages.
    for name, path, expected in [
        ("overview", "/ui/", "Failing tasks"),
        ("timeline", "/ui/timeline?hours=1", "Timeline"),
        ("events", "/ui/events", "System events"),
        ("audit", "/ui/audit?action=task.pause", "task.pause"),
    ]:
        s.go(path)
        assert expected in s.text(), name
        s.check_page(name)

    # Drain the worker (last: it stops running tasks).
    s.go("/ui/workers")
    s.check_page("workers")
    s.press("Drain")
    s.wait(lambda: "is draining" in s.text(), what="the drain notice")
    assert "draining" in s.find("table.workers").text
    s.check_page("workers-drained")
