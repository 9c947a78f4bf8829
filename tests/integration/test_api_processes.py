"""Several API processes on one port (api.processes) as a real `schedd run`: the
helpers serve the same port, /metrics sums what every process counted, the helpers
stop with the daemon and die with it, and SQLite keeps one process."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from schedd.config import load_settings
from schedd.db import create_database
from schedd.errors import ConfigError
from schedd.preflight import check
from schedd.schemas import SCOPES
from schedd.services import auth
from tests.proc import isolated_env, schedd, wait_until

pytestmark = pytest.mark.external_service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Api:
    def __init__(self, proc: subprocess.Popen[str], port: int, metrics: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.metrics = metrics

    def helpers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


@pytest.fixture
def api(pg_url: str, tmp_path: Path) -> Iterator[Api]:
    port = _free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": pg_url,
            "JWT_SECRET": "test-" + "s" * 40,
            "API_PORT": str(port),
            "SCHEDD_API__PROCESSES": "3",
            "SCHEDD_DAEMON__DATA_DIR": str(tmp_path / "data"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        },
    )
    with open(tmp_path / "schedd.log", "w") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            schedd("run", "--role", "api"), env=env, cwd=tmp_path, stderr=log, text=True
        )
    running = Api(proc, port, metrics)
    try:
        assert wait_until(lambda: _healthy(running) and len(running.helpers()) == 2, 120)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _healthy(api: Api) -> bool:
    try:
        return httpx.get(api.base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _key(pg_url: str) -> str:
    db = create_database(pg_url)
    with db.session() as session:
        key = auth.create_api_key(session, "test", list(SCOPES), creator=None).key
    db.dispose()
    return key


def _whoami_count(text: str) -> float:
    pattern = (
        r'scheduler_api_request_duration_seconds_count\{method="GET",'
        r'route="/api/whoami",status="200"\} (\S+)'
    )
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_every_process_serves_metrics_count_all_and_helpers_stop_with_it(
    api: Api, pg_url: str
) -> None:
    headers = {"Authorization": f"Bearer {_key(pg_url)}"}
    pids = {api.proc.pid, *(helper.pid for helper in api.helpers())}
    for _ in range(60):  # a new connection each: the kernel picks a process for each
        assert httpx.get(api.base + "/api/whoami", headers=headers).status_code == 200
    # Each process that served a request keeps its samples in its own file.
    files = [re.search(r"_(\d+)\.db$", path.name) for path in api.metrics.iterdir()]
    served = {int(found.group(1)) for found in files if found}
    assert len(served & pids) >= 2, (served, pids)
    # Whichever process answers /metrics, it counts every process's requests.
    for _ in range(6):
        assert _whoami_count(httpx.get(api.base + "/metrics").text) == 60

    # A helper that dies is replaced; SIGTERM stops the daemon and every helper.
    first, _ = api.helpers()
    first.kill()
    assert wait_until(lambda: first.pid not in {h.pid for h in api.helpers()}, 15)
    assert wait_until(lambda: len(api.helpers()) == 2, 15)
    helpers = api.helpers()
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(30) == 0
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive


def test_helpers_die_with_the_daemon(api: Api) -> None:
    helpers = api.helpers()
    api.proc.kill()  # SIGKILL: no clean stop; the kernel tells the helpers
    _, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive


def test_sqlite_serves_the_api_from_one_process(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path), "SCHEDD_API__PROCESSES": "2"})
    with pytest.raises(ConfigError, match=r"api\.processes.*PostgreSQL"):
        check(settings, ["api"])
    check(settings, ["scheduler"])  # only the api role cares
