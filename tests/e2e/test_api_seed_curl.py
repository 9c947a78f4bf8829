"""The seed's curl examples, as written, against a live `schedd` with real `curl`.

The only substitutions are the ones the seed asks the reader to make: a real token for
``<token>`` and the port this test's daemon listens on for 8080. Output flags (``-sS``,
and ``-o``/``-w`` to read the status code and body) are added to each command.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schedd.db import create_database
from schedd.services import workers
from tests.proc import isolated_env, run, schedd, wait_until

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "quick-reference.zh.md"

# The seed's API commands, verbatim (continuation lines joined), in the seed's order.
# Every curl command of the seed that talks to the API must be here (checked below).
SEED_COMMANDS = [
    "curl http://localhost:8080/health",
    'curl -X POST http://localhost:8080/api/tasks -H "Content-Type: application/json" '
    '-H "Authorization: Bearer <token>" -d \'{ "name": "my_task", "executor": "shell", '
    '"command": "echo hello world", "schedule": "0 */5 * * * *" }\'',
    'curl -H "Authorization: Bearer <token>" http://localhost:8080/api/tasks',
    'curl -H "Authorization: Bearer <token>" http://localhost:8080/api/tasks/1',
    'curl -X POST -H "Authorization: Bearer <token>" http://localhost:8080/api/tasks/1/trigger',
    'curl -X POST -H "Authorization: Bearer <token>" http://localhost:8080/api/tasks/1/pause',
    'curl -X POST -H "Authorization: Bearer <token>" http://localhost:8080/api/tasks/1/resume',
    'curl -H "Authorization: Bearer <token>" http://localhost:8080/api/workers',
    'curl -H "Authorization: Bearer <token>" http://localhost:8080/api/workers/worker-001',
    'curl -X POST -H "Authorization: Bearer <token>" -H "Content-Type: application/json" '
    'http://localhost:8080/api/workers/worker-001/heartbeat -d \'{ "current_task_count": 2, '
    '"load_average": 0.5, "memory_usage": 512, "cpu_usage": 25.0 }\'',
    'curl -H "Authorization: Bearer <token>" http://localhost:8080/api/system/stats',
    "curl http://localhost:8080/metrics",
    'curl -H "Authorization: Bearer <token>" '
    '"http://localhost:8080/api/system/logs?level=error&page=1&size=50"',
    'curl -H "Authorization: Bearer <token>" '
    '"http://localhost:8080/api/system/logs?level=error&start_time=2024-01-01T00:00:00Z"',
    'curl -H "Authorization: Bearer <token>" "http://localhost:8080/api/runs?status=pending"',
    "curl http://localhost:8080/metrics | grep scheduler_",
]


def seed_commands(text: str) -> list[str]:
    """Every curl command line of the seed's bash blocks that calls localhost:8080."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\s*\\\n\s*", " ", block)
        pending = ""
        for raw in joined.splitlines():
            pending = f"{pending} {raw.strip()}" if pending else raw.strip()
            if pending.count("'") % 2:
                continue  # inside a quoted body that spans lines
            line, pending = re.sub(r"\s+", " ", pending), ""
            if line.startswith("curl") and "localhost:8080" in line:
                commands.append(line)
    return commands


def test_the_list_above_is_the_seed_s() -> None:
    if not SEED.exists():
        pytest.skip(f"seed not found at {SEED}")
    normalized = [re.sub(r"\s+", " ", c) for c in SEED_COMMANDS]
    found = seed_commands(SEED.read_text(encoding="utf-8"))
    assert sorted(set(found)) == sorted(set(normalized))


@dataclass
class Daemon:
    port: int
    data_dir: Path
    token: str
    home: Path
    proc: subprocess.Popen[str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from _daemon(tmp_path, ["--role", "api"])


def _daemon(
    tmp_path: Path, roles: list[str], extra: dict[str, str] | None = None
) -> Iterator[Daemon]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = _free_port()
    env = isolated_env(tmp_path, {"API_PORT": str(port), **(extra or {})})
    proc = subprocess.Popen(
        schedd("run", *roles),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    data_dir = tmp_path / ".local" / "share" / "sched"
    url_file = data_dir / "api.url"
    try:
        assert wait_until(url_file.exists, 30), "schedd did not write api.url"
        url = url_file.read_text().strip()
        assert url == f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _healthy(url), 30)
        token = (data_dir / "admin.key").read_text().strip()
        yield Daemon(port, data_dir, token, tmp_path, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "Traceback" not in out
        daemon_output = out
        key_file = data_dir / "admin.key"
        if key_file.exists():
            assert key_file.read_text().strip() not in daemon_output
        assert str(key_file) in daemon_output  # the log says where the key is


def _register_worker(daemon: Daemon, worker_id: str) -> None:
    db = create_database(f"sqlite:///{daemon.data_dir / 'sched.db'}")
    with db.session() as session:
        workers.register(
            session,
            worker_id=worker_id,
            hostname="server-01",
            ip_address="192.168.1.100",
            task_types=["python", "shell"],
            executor_types=["python", "shell"],
            max_concurrent_tasks=5,
            pid=4242,
            version="test",
            stale_after=60,
        )
    db.dispose()


def _curl(daemon: Daemon, command: str) -> tuple[int, str]:
    command = command.replace("<token>", daemon.token).replace("8080", str(daemon.port))
    if "|" in command:  # a pipeline: its own exit status and output
        result = subprocess.run(
            ["bash", "-c", command.replace("curl ", "curl -sS ", 1)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return (200 if result.returncode == 0 else 0), result.stdout
    body = daemon.home / "body.out"
    result = subprocess.run(
        ["bash", "-c", f"{command} -sS -o {body} -w '%{{http_code}}'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout), body.read_text()


@pytest.mark.slow
def test_seed_curl_examples_work_as_written(daemon: Daemon) -> None:
    for name in ("admin.key", "jwt.secret"):
        mode = stat.S_IMODE((daemon.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {mode:o}"
    assert daemon.token.startswith("scheduler_") and len(daemon.token) == 42
    _register_worker(daemon, "worker-001")

    bodies = []
    for command in SEED_COMMANDS:
        status, body = _curl(daemon, command)
        assert 200 <= status < 300, f"{command}: {status} {body}"
        bodies.append(body)
    (health, created, listed, shown, run, paused, resumed, workers_, worker, beat, stats) = (
        json.loads(b) for b in bodies[:11]
    )
    assert health == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "version": health["version"],
        "pending_runs": 0,
        "oldest_pending_seconds": None,
        "isolation": health["isolation"],
        "clock_skew_seconds": health["clock_skew_seconds"],
    }
    assert isinstance(health["isolation"], dict)  # active workers by isolation mode
    assert created["id"] == 1 and created["schedule"] == "0 */5 * * * *"
    assert [t["name"] for t in listed["items"]] == ["my_task"]
    assert shown["command"] == "echo hello world"
    assert run["task_id"] == 1 and run["status"] == "pending" and run["trigger"] == "manual"
    assert paused["status"] == "paused" and resumed["status"] == "active"
    assert [w["id"] for w in workers_["items"]] == ["worker-001"]
    assert worker["hostname"] == "server-01"
    assert beat["current_task_count"] == 2 and beat["memory_usage"] == 512
    assert stats["tasks"]["active"] == 1 and stats["queue_depth"] == 1
    assert "scheduler_api_request_duration_seconds_bucket" in bodies[11]
    for logs in bodies[12:14]:
        page = json.loads(logs)
        assert set(page) == {"items", "total", "page", "size"}
        assert all(item["level"] in ("error", "critical") for item in page["items"])
    pending = json.loads(bodies[14])
    assert [r["id"] for r in pending["items"]] == [run["id"]]
    assert 'scheduler_queue_depth{task_type="shell"} 1.0' in bodies[15]


@pytest.mark.external_service
def test_postgresql_start_without_a_jwt_secret_stops_with_one_line(
    tmp_path: Path, pg_url: str
) -> None:
    env = isolated_env(tmp_path, {"DATABASE_URL": pg_url, "API_PORT": str(_free_port())})
    result = run(schedd("run", "--role", "api"), env, tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "auth.jwt_secret" in errors[0] and "JWT_SECRET" in errors[0]
    assert "Traceback" not in result.stderr


# The seed's python task needs these beside it: a script that reads its --input.
PROCESS_DATA = """\
import argparse, csv
parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
rows = list(csv.DictReader(open(parser.parse_args().input, encoding="utf-8")))
print(f"processed {len(rows)} rows, total {sum(int(r['amount']) for r in rows)}")
"""


# The seed's Task example (its data model section), verbatim: the test runs wherever the
# repository is cloned; test_the_task_above_is_the_seed_s holds it to the seed.
SEED_TASK = """\
{
  "id": 1,
  "name": "数据处理任务",
  "description": "处理每日数据文件",
  "task_type": "python",
  "executor": "python",
  "command": "python process_data.py",
  "arguments": ["--input", "data.csv"],
  "schedule": "0 2 * * *",
  "priority": "normal",
  "retry_count": 3,
  "timeout_seconds": 3600,
  "status": "active",
  "created_at": "2024-01-01T00:00:00Z",
  "updated_at": "2024-01-01T00:00:00Z",
  "last_run_at": "2024-01-01T02:00:00Z",
  "next_run_at": "2024-01-02T02:00:00Z",
  "dependencies": [],
  "tags": ["data", "daily"],
  "metadata": {}
}
"""


def seed_task() -> dict[str, object]:
    task: dict[str, object] = json.loads(SEED_TASK)
    return task


def test_the_task_above_is_the_seed_s() -> None:
    if not SEED.exists():
        pytest.skip(f"seed not found at {SEED}")
    text = SEED.read_text(encoding="utf-8")
    block = text.split("### Task", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == seed_task()


@pytest.fixture
def full_daemon(tmp_path: Path) -> Iterator[Daemon]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "process_data.py").write_text(PROCESS_DATA)
    (jobs / "data.csv").write_text("day,amount\n1,10\n2,32\n")
    yield from _daemon(tmp_path, [], {"SCHEDD_WORKER__WORKING_DIRECTORY": str(jobs)})


@pytest.mark.slow
def test_the_seed_s_python_task_posted_as_written_completes(full_daemon: Daemon) -> None:
    """The seed's Task JSON (read-only fields and all) through the seed's create command,
    then the seed's trigger command: an all-roles schedd runs `python process_data.py
    --input data.csv` and the run completes with the script's output."""
    task = seed_task()
    assert task["command"] == "python process_data.py" and task["id"] == 1
    create = SEED_COMMANDS[1]
    body = create[create.index("-d '") + 4 : -1]
    status, created = _curl(full_daemon, create.replace(body, json.dumps(task)))
    assert status == 201, created
    created_task = json.loads(created)
    assert created_task["warnings"] == []  # the script is where the worker looks
    assert created_task["name"] == task["name"] and created_task["arguments"] == task["arguments"]
    status, triggered = _curl(full_daemon, SEED_COMMANDS[4])  # .../api/tasks/1/trigger
    assert status == 202, triggered
    run_id = json.loads(triggered)["id"]
    url = f"http://127.0.0.1:{full_daemon.port}/api/runs/{run_id}"
    headers = {"Authorization": f"Bearer {full_daemon.token}"}
    finished: dict[str, object] = {}

    def ended() -> bool:
        finished.update(httpx.get(url, headers=headers, timeout=5).json())
        return finished["status"] not in ("pending", "running")

    assert wait_until(ended, 60), finished
    assert (finished["status"], finished["exit_code"]) == ("completed", 0), finished
    assert finished["result"] == "processed 2 rows, total 42\n"
