"""observability.metrics_listen: a schedd without the API role serves its own metrics.

Real `schedd run` processes on SQLite; the scrape is an HTTP request from outside.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from schedd.db import create_database, migrate
from schedd.schemas import TaskCreate, validated
from schedd.services import tasks, workers
from tests.e2e.test_schedd_command import one_line_error
from tests.proc import isolated_env, run, schedd, wait_until
from tests.schedctlserver import free_port


def sample(text: str, name: str) -> float:
    """The sum of a metric's samples named exactly ``name`` (any labels); 0 if none."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def test_scheduler_and_worker_serve_their_own_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    db = create_database(url)
    migrate(db)
    with db.session() as session:
        data = {"name": "tick", "executor": "shell", "command": "true", "schedule": "* * * * * *"}
        tasks.create_task(session, validated(TaskCreate, data))
    db.dispose()

    port = free_port()
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": url,
            "SCHEDD_OBSERVABILITY__METRICS_LISTEN": f"127.0.0.1:{port}",
            "SCHEDD_SCHEDULER__SCHEDULING_INTERVAL": "0.5",
        },
    )
    log = (tmp_path / "schedd.log").open("w+")
    proc = subprocess.Popen(
        schedd("run", "--role", "scheduler", "--role", "worker"),
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    scraped = ""

    def fired_and_ran() -> bool:
        nonlocal scraped
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except httpx.TransportError:
            return False
        scraped = response.text
        return (
            sample(scraped, "scheduler_fires_total") > 0
            and sample(scraped, "scheduler_run_duration_seconds_count") > 0
        )

    try:
        assert wait_until(fired_and_ran, 15, interval=0.25), scraped or "nothing served"
        db = create_database(url)
        with db.session() as session:
            # The worker registered its metrics listener's port (the seed's Worker.port).
            assert [w.port for w in workers.list_workers(session).items] == [port]
        db.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.seek(0)
        out = log.read()
        log.close()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert f"metrics of this process at http://127.0.0.1:{port}/metrics" in out
    assert sample(scraped, "scheduler_pass_seconds_count") > 0
    assert 'scheduler_run_duration_seconds_count{executor="shell",status="completed"}' in scraped
    # The database gauges stay on the API's /metrics: every process would repeat them.
    assert "scheduler_runs_active" not in scraped
    # Stopped with the daemon.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_metrics_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = isolated_env(
            tmp_path,
            {
                "SCHEDD_OBSERVABILITY__METRICS_LISTEN": f"127.0.0.1:{port}",
                "SCHEDD_LOG": "warning",  # only what goes wrong
            },
        )
        result = run(schedd("run", "--role", "worker"), env, tmp_path, timeout=30)
    assert result.returncode == 69, result.stderr  # EX_UNAVAILABLE, like the API's port
    line = one_line_error(result)
    assert line.startswith("schedd: error: observability.metrics_listen: cannot listen on")
    assert f"127.0.0.1:{port}" in line


def test_a_bad_metrics_listen_is_a_config_error(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, {"SCHEDD_OBSERVABILITY__METRICS_LISTEN": "9464"})
    result = run(schedd("run", "--role", "worker"), env, tmp_path, timeout=30)
    assert result.returncode == 78, result.stderr
    line = one_line_error(result)
    assert "SCHEDD_OBSERVABILITY__METRICS_LISTEN" in line
    assert "observability.metrics_listen" in line


def test_disabled_metrics_serve_nothing_and_say_so(tmp_path: Path) -> None:
    port = free_port()
    env = isolated_env(
        tmp_path,
        {
            "SCHEDD_OBSERVABILITY__METRICS_LISTEN": f"127.0.0.1:{port}",
            "SCHEDD_OBSERVABILITY__METRICS_ENABLED": "false",
        },
    )
    log = (tmp_path / "schedd.log").open("w+")
    proc = subprocess.Popen(
        schedd("run", "--role", "worker"),
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: "schedd is running" in Path(log.name).read_text(), 15)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    out = Path(log.name).read_text()
    assert proc.returncode == 0, out
    assert "metrics_enabled is false: no metrics are served" in out
