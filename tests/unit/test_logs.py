"""Process logs: JSON lines with stable keys, text lines, level directives, no secrets."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd import logs
from tests.proc import isolated_env, schedd, wait_until
from tests.schedctlserver import free_port

JSON_KEYS = {"time", "level", "logger", "message"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """logs.setup() into a buffer; the root logger and levels restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # setup() sets levels on the loggers it names and on third-party ones (pika,
    # uvicorn.access...): restore every logger, or later tests lose their records.
    touched = ["schedd", "schedd.scheduler", "schedd.worker", "schedd.api"]
    touched += ["pika", "alembic", "uvicorn.access", "httpx", "httpcore"]
    touched += list(logging.root.manager.loggerDict)
    levels = {name: logging.getLogger(name).level for name in touched}
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_have_stable_keys_and_extras(stream: io.StringIO) -> None:
    logs.setup("info", "json", stream)
    logging.getLogger("schedd.worker").info("run %d done", 7, extra={"run_id": 7})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("schedd.scheduler").exception("step failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == JSON_KEYS | {"run_id"}
    assert first["level"] == "info" and first["logger"] == "schedd.worker"
    assert first["message"] == "run 7 done" and first["run_id"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", first["time"])
    assert set(second) == JSON_KEYS | {"exc"}
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_json_lines_leave_out_uvicorns_coloured_copy(stream: io.StringIO) -> None:
    logs.setup("info", "json", stream)
    logging.getLogger("schedd.api").info(
        "Uvicorn running", extra={"color_message": "\x1b[1mUvicorn\x1b[0m running"}
    )
    line = stream.getvalue()
    assert "\\u001b" not in line and "\x1b" not in line
    assert set(json.loads(line)) == JSON_KEYS


def test_pika_connection_errors_stay_quiet_unless_asked_for(stream: io.StringIO) -> None:
    logs.setup("info", "text", stream)
    logging.getLogger("pika.adapters.utils.connection_workflow").error("refused")
    assert stream.getvalue() == ""
    logs.setup("info,pika=error", "text", stream)
    logging.getLogger("pika.adapters.utils.connection_workflow").error("refused")
    assert "refused" in stream.getvalue()


def test_text_lines_are_readable(stream: io.StringIO) -> None:
    logs.setup("info", "text", stream)
    logging.getLogger("schedd.daemon").info("schedd is running")
    line = stream.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    schedd.daemon: schedd is running", line
    )


def test_level_directives_set_the_root_and_single_loggers(stream: io.StringIO) -> None:
    logs.setup("info,schedd.scheduler=debug", "text", stream)
    logging.getLogger("schedd.scheduler.fire").debug("scheduler detail")
    logging.getLogger("schedd.worker").debug("worker detail")
    logging.getLogger("schedd.worker").info("worker news")
    text = stream.getvalue()
    assert "scheduler detail" in text
    assert "worker detail" not in text
    assert "worker news" in text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("debug", (logging.DEBUG, {})),
        ("warn,schedd.api=error", (logging.WARNING, {"schedd.api": logging.ERROR})),
        (" INFO , pika=debug ", (logging.INFO, {"pika": logging.DEBUG})),
    ],
)
def test_parse_directives(spec: str, expected: tuple[int, dict[str, int]]) -> None:
    assert logs.parse_directives(spec) == expected


def test_a_bad_directive_is_refused() -> None:
    with pytest.raises(ValueError, match="loud"):
        logs.parse_directives("info,schedd=loud")


def test_no_secret_in_any_line_of_a_daemon_start(tmp_path: Path) -> None:
    """JWT secret and the generated admin key never appear, even at debug level."""
    secret = "jwt-secret-value-" + "q" * 32
    env = isolated_env(
        tmp_path,
        {
            "JWT_SECRET": secret,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "debug",
            "API_PORT": str(free_port()),
        },
    )
    data_dir = tmp_path / ".local" / "share" / "sched"
    proc = subprocess.Popen(
        schedd("run", "--role", "api", "--role", "scheduler"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until((data_dir / "api.url").exists, 30), "the API did not start"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    admin_key = (data_dir / "admin.key").read_text().strip()
    assert len(admin_key) >= 20
    lines = out.splitlines()
    assert any("schedd is running" in line for line in lines)
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert set(record) >= JSON_KEYS, line
        assert secret not in line and admin_key not in line, line
