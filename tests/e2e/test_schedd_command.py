"""`schedd` as a user meets it: real subprocesses, real files, real signals."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.proc import isolated_env, run, schedd, wait_until


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[databse]\nurl = 'sqlite:///x.db'\n", "did you mean 'database'"),
        ("[api]\nprot = 8080\n", "did you mean 'port'"),
        ("[api]\nport = 'eighty'\n", "api.port"),
        ("[api]\nport = 70000\n", "api.port"),
        ("[database]\nurl = 'mysql://localhost/x'\n", "database.url"),
        ("[message_queue]\ntype = 'kafka'\n", "message_queue.type"),
        ("[worker]\nheartbeat_interval = -1\n", "worker.heartbeat_interval"),
        ("[api\nport = 1\n", "invalid TOML"),
    ],
)
def test_bad_config_stops_with_one_line_naming_file_and_key(
    tmp_path: Path, toml: str, expected: str
) -> None:
    config = tmp_path / "schedd.toml"
    config.write_text(toml)
    env = isolated_env(tmp_path)
    for args in (("config", "check", str(config)), ("--config", str(config), "run")):
        result = run(schedd(*args), env, tmp_path)
        assert result.returncode == 78, result.stderr
        line = one_line_error(result)
        assert str(config) in line
        assert expected in line


def test_bad_environment_variable_names_the_variable(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, {"SCHEDD_API__PORT": "abc"})
    result = run(schedd("config", "show"), env, tmp_path)
    assert result.returncode == 78
    assert "SCHEDD_API__PORT" in one_line_error(result)


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    result = run(schedd("--config", str(tmp_path / "nope.toml")), isolated_env(tmp_path), tmp_path)
    assert result.returncode == 78
    assert "nope.toml" in one_line_error(result)


def test_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    result = run(schedd("run", "--role", "janitor"), isolated_env(tmp_path), tmp_path)
    assert result.returncode == 64
    assert "janitor" in one_line_error(result)


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    secret = "s3cr3t-" + "x" * 40
    env = isolated_env(
        tmp_path,
        {"JWT_SECRET": secret, "DATABASE_URL": "postgresql://sched:hunter2@db.example/sched"},
    )
    result = run(schedd("config", "show"), env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout
    assert "hunter2" not in result.stdout
    assert "[database]" in result.stdout and "db.example" in result.stdout


def test_run_migrates_embedded_database_logs_paths_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    proc = subprocess.Popen(
        schedd("run", "--role", "scheduler"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db_file = tmp_path / ".local" / "share" / "sched" / "sched.db"
    try:
        assert wait_until(db_file.exists, 30), "the embedded database was not created"
        # Give the daemon time to finish start-up before the signal.
        assert wait_until(lambda: _has_tables(db_file), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "data directory: " + str(tmp_path / ".local" / "share" / "sched") in out
    assert "config file: none" in out
    assert "Traceback" not in out


def _has_tables(db_file: Path) -> bool:
    engine = sa.create_engine(f"sqlite:///{db_file}")
    try:
        return "tasks" in sa.inspect(engine).get_table_names()
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.mark.external_service
def test_migrate_creates_the_schema_on_postgresql(tmp_path: Path, empty_pg_url: str) -> None:
    env = isolated_env(tmp_path, {"DATABASE_URL": empty_pg_url})
    result = run(schedd("migrate"), env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "migrated empty -> " in result.stdout
    engine = sa.create_engine(empty_pg_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    try:
        assert {"tasks", "task_runs", "workers"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    again = run(schedd("migrate"), env, tmp_path)
    assert again.returncode == 0 and "already at" in again.stdout


@pytest.mark.external_service
def test_daemon_refuses_a_postgresql_schema_that_is_behind(
    tmp_path: Path, empty_pg_url: str
) -> None:
    env = isolated_env(tmp_path, {"DATABASE_URL": empty_pg_url, "JWT_SECRET": "s" * 40})
    result = run(schedd("run"), env, tmp_path)
    assert result.returncode == 69
    assert "schedd migrate" in one_line_error(result)


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "SCHEDD_DATABASE__CONNECTION_TIMEOUT": "2",
            "JWT_SECRET": "s" * 40,  # configuration first: that is checked before the database
        },
    )
    result = run(schedd("migrate"), env, tmp_path)
    assert result.returncode == 69
    assert "cannot migrate" in one_line_error(result)
    result = run(schedd("run"), env, tmp_path)
    assert result.returncode == 69
    one_line_error(result)


def test_config_check_of_a_file_applies_the_environment_as_schedd_would(tmp_path: Path) -> None:
    """The production file names no secret: it checks good with the environment the
    units give it (/etc/schedd/schedd.env), and without it names what is missing."""
    config = Path(__file__).resolve().parents[2] / "etc" / "schedd.production.toml"
    bare = run(schedd("config", "check", str(config)), isolated_env(tmp_path), tmp_path)
    assert bare.returncode == 78
    assert "RABBITMQ_URL" in one_line_error(bare)
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": "postgresql://sched@db.example/sched",
            "RABBITMQ_URL": "amqp://sched:pw@mq.example:5672/sched",
            "JWT_SECRET": "x" * 40,
        },
    )
    good = run(schedd("config", "check", str(config)), env, tmp_path)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == f"{config}: ok"


def test_config_check_checks_what_the_roles_need(tmp_path: Path) -> None:
    """The API role needs a JWT secret outside the embedded default; a host of workers
    does not: the check says what `schedd run` would."""
    config = Path(__file__).resolve().parents[2] / "etc" / "schedd.production.toml"
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": "postgresql://sched@db.example/sched",
            "RABBITMQ_URL": "amqp://sched:pw@mq.example:5672/sched",
        },
    )
    all_roles = run(schedd("config", "check", str(config)), env, tmp_path)
    assert all_roles.returncode == 78
    assert "auth.jwt_secret" in one_line_error(all_roles)
    api = run(schedd("config", "check", str(config), "--role", "api"), env, tmp_path)
    assert api.returncode == 78
    workers = run(
        schedd("config", "check", str(config), "--role", "worker", "--role", "scheduler"),
        env,
        tmp_path,
    )
    assert workers.returncode == 0, workers.stderr
    # schedd run refuses the same, before it touches the database.
    started = run(schedd("--config", str(config), "run", "--role", "api"), env, tmp_path)
    assert started.returncode == 78
    assert "auth.jwt_secret" in one_line_error(started)
