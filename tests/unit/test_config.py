"""Settings: defaults, file search, precedence, environment, errors, rendering."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from schedd import configfile, preflight
from schedd.config import (
    DatabaseSettings,
    Settings,
    check_file,
    default_database_url,
    find_config_file,
    load_settings,
    render_toml,
)
from schedd.configfile import redact_url
from schedd.errors import ConfigError
from schedd.logs import parse_directives

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "schedd.toml"
SECRET = "s3cret-" + "x" * 40


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./schedd.toml, ~/.config or /etc file of the developer's may leak in."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(configfile, "SYSTEM_CONFIG", tmp_path / "etc" / "schedd.toml")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(
    text: str | None,
    tmp_path: Path,
    env: dict[str, str],
    overrides: dict[str, Any] | None = None,
) -> tuple[ConfigError, str]:
    """Load ``text`` as a file (or no file) and return the error and the file path."""
    path = write(tmp_path / "schedd.toml", text) if text is not None else None
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env, overrides=overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"{caught.value.source}: {caught.value.key}: {caught.value.reason}"
        if caught.value.key
        else f"{caught.value.source}: {caught.value.reason}"
    )
    return caught.value, str(path)


# -- defaults ---------------------------------------------------------------------


def test_defaults_without_a_file(env: dict[str, str], home: Path) -> None:
    settings = load_settings(env=env)

    data_dir = home / ".local" / "share" / "sched"
    assert settings.source is None
    assert settings.daemon.data_dir == str(data_dir)
    assert settings.database.url == f"sqlite:///{data_dir}/sched.db"
    assert settings.is_embedded
    assert settings.message_queue.type == "database"
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8080)
    assert settings.daemon.roles == ["api", "scheduler", "worker"]
    assert settings.worker.executor_types == ["shell", "python", "http", "function"]
    assert settings.auth.jwt_secret is None
    assert settings.observability.log_level == "info"


def test_xdg_data_home_moves_the_data_dir_and_the_database(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": "/nowhere", "XDG_DATA_HOME": str(tmp_path / "d")})

    assert settings.daemon.data_dir == str(tmp_path / "d" / "sched")
    assert settings.database.url == default_database_url(tmp_path / "d" / "sched")


def test_relative_xdg_data_home_is_ignored(env: dict[str, str], home: Path) -> None:
    settings = load_settings(env={**env, "XDG_DATA_HOME": "relative/dir"})

    assert settings.daemon.data_dir == str(home / ".local" / "share" / "sched")


def test_data_dir_from_the_file_moves_the_embedded_database(
    tmp_path: Path, env: dict[str, str], home: Path
) -> None:
    path = write(tmp_path / "s.toml", '[daemon]\ndata_dir = "~/state"\n')

    settings = load_settings(path, env=env)

    assert settings.daemon.data_dir == str(home / "state")
    assert settings.database.url == f"sqlite:///{home}/state/sched.db"


def test_relative_data_dir_is_taken_from_the_working_directory(
    tmp_path: Path, env: dict[str, str]
) -> None:
    settings = load_settings(env=env, overrides={"daemon.data_dir": "state"})

    assert settings.daemon.data_dir == str(tmp_path / "cwd" / "state")


def test_an_explicit_database_url_is_kept_as_written(env: dict[str, str]) -> None:
    settings = load_settings(env={**env, "DATABASE_URL": "postgres://u:pw@db/sched"})

    assert settings.database.url == "postgres://u:pw@db/sched"
    assert settings.database.sqlalchemy_url == "postgresql+psycopg://u:pw@db/sched"
    assert not settings.is_embedded


def test_settings_can_be_built_directly() -> None:
    settings = Settings(daemon={"data_dir": "/srv/sched"})

    assert settings.database.url == "sqlite:////srv/sched/sched.db"
    assert Settings().api.port == 8080


# -- file search ------------------------------------------------------------------


def test_search_order(tmp_path: Path, env: dict[str, str], home: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", "")
    named = write(tmp_path / "named.toml", "")
    local = write(tmp_path / "cwd" / "schedd.toml", "")
    user = write(home / ".config" / "sched" / "schedd.toml", "")
    system = write(configfile.SYSTEM_CONFIG, "")
    env = {**env, "SCHEDD_CONFIG": str(named)}

    assert find_config_file(explicit, env) == explicit
    assert find_config_file(None, env) == named
    del env["SCHEDD_CONFIG"]
    assert find_config_file(None, env) == local
    local.unlink()
    assert find_config_file(None, env) == user
    user.unlink()
    assert find_config_file(None, env) == system
    system.unlink()
    assert find_config_file(None, env) is None


def test_xdg_config_home_is_searched(tmp_path: Path, env: dict[str, str]) -> None:
    user = write(tmp_path / "xdg" / "sched" / "schedd.toml", "[api]\nport = 9001\n")

    settings = load_settings(env={**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")})

    assert settings.api.port == 9001
    assert settings.source == str(user)


def test_found_file_is_loaded_and_recorded_as_source(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "cwd" / "schedd.toml", "[api]\nport = 9002\n")

    settings = load_settings(env=env)

    assert settings.api.port == 9002
    assert settings.source == str(tmp_path / "cwd" / "schedd.toml")
    assert "source" not in settings.model_dump()


def test_missing_explicit_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "missing.toml"

    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_settings(missing, env=env)
    assert caught.value.source == str(missing)


def test_missing_schedd_config_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={**env, "SCHEDD_CONFIG": str(tmp_path / "gone.toml")})
    assert caught.value.source == "SCHEDD_CONFIG"
    assert "gone.toml" in str(caught.value)


# -- bad files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            '[databse]\nurl = "sqlite://"\n',
            "databse",
            "unknown section 'databse' (did you mean 'database'?)",
        ),
        (
            '[database]\nurll = "sqlite://"\n',
            "database.urll",
            "unknown key 'urll' (did you mean 'url'?)",
        ),
        (
            "[worker]\ntask_timeout = 5\n",
            "worker.task_timeout",
            "unknown key 'task_timeout' (it belongs in [scheduler])",
        ),
        ("port = 8080\n", "port", "unknown key 'port' (it belongs in [api])"),
        ("api = 3\n", "api", "expected a table [api], got 3"),
        ('[api]\nport = "abc"\n', "api.port", "expected an integer, got 'abc'"),
        ("[api]\nport = 80.5\n", "api.port", "expected an integer, got 80.5"),
        ("[api]\nport = true\n", "api.port", "expected an integer, got true"),
        ("[api]\nhost = false\n", "api.host", "expected a string, got false"),
        ("[worker]\nfence_seconds = true\n", "worker.fence_seconds", "expected a number, got true"),
        ("[api]\nport = 70000\n", "api.port", "must be between 1 and 65535, got 70000"),
        (
            "[database]\nconnection_timeout = 0\n",
            "database.connection_timeout",
            "must be greater than 0 and at most 3600, got 0",
        ),
        (
            "[scheduler]\nscheduling_interval = inf\n",
            "scheduler.scheduling_interval",
            "expected a finite number, got inf",
        ),
        ('[api]\nhost = ""\n', "api.host", "must not be empty"),
        ('[api]\ncors_origins = "*"\n', "api.cors_origins", "expected a list, got '*'"),
        (
            '[api]\ncors_origins = ["http://x.example/"]\n',
            "api.cors_origins",
            "not an origin: 'http://x.example/'",
        ),
        (
            '[observability]\nmetrics_enabled = "maybe"\n',
            "observability.metrics_enabled",
            "expected true or false, got 'maybe'",
        ),
        (
            '[database]\nurl = "mysql://u@h/db"\n',
            "database.url",
            "unsupported scheme 'mysql' (expected sqlite or postgresql)",
        ),
        ('[database]\nurl = "sched.db"\n', "database.url", "not a URL: 'sched.db'"),
        (
            '[message_queue]\nnamespace = "a:runs"\n',
            "message_queue.namespace",
            "not a namespace: 'a:runs' (1-64 letters, digits, '_' or '-';",
        ),
        (
            "[database]\nidle_in_transaction_session_timeout = -1\n",
            "database.idle_in_transaction_session_timeout",
            "must be between 0 and 86400, got -1",
        ),
        (
            '[message_queue]\ntype = "kafka"\n',
            "message_queue.type",
            "expected 'database', 'rabbitmq' or 'redis', got 'kafka'",
        ),
        (
            "[message_queue]\nclaim_idle_seconds = 0.5\n",
            "message_queue.claim_idle_seconds",
            "must be between 1 and 86400, got 0.5",
        ),
        (
            '[worker]\nexecutor_types = ["shell", "java"]\n',
            "worker.executor_types[1]",
            "expected 'shell', 'python', 'http' or 'function', got 'java'",
        ),
        ("[worker]\nexecutor_types = []\n", "worker.executor_types", "must not be empty"),
        ("[worker]\ntask_types = []\n", "worker.task_types", "must not be empty"),
        ('[worker]\nid = "a b"\n', "worker.id", "without spaces or '/'"),
        (
            '[scheduler]\ndefault_timezone = "Mars/Olympus"\n',
            "scheduler.default_timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            '[daemon]\nroles = ["api", "cron"]\n',
            "daemon.roles[1]",
            "expected 'api', 'scheduler' or 'worker', got 'cron'",
        ),
        ('[auth]\njwt_secret = "short"\n', "auth.jwt_secret", "must be at least 32 bytes"),
    ],
)
def test_bad_file_names_file_key_and_reason(
    tmp_path: Path, env: dict[str, str], text: str, key: str, reason: str
) -> None:
    error, path = config_error(text, tmp_path, env)

    assert (error.source, error.key) == (path, key)
    assert reason in error.reason
    assert str(error).startswith(f"{path}: {key}: ")


def test_invalid_toml_names_the_file(tmp_path: Path, env: dict[str, str]) -> None:
    error, path = config_error("[api]\nport = \n", tmp_path, env)

    assert (error.source, error.key) == (path, None)
    assert error.reason.startswith("invalid TOML: Invalid value (at line 2")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[api]\nhost = "caf\xe9"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load_settings(path, env=env)
    assert caught.value.source == str(path)


def test_a_directory_is_not_a_config_file(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="is a directory") as caught:
        load_settings(tmp_path, env=env)
    assert caught.value.source == str(tmp_path)


def test_errors_never_show_secrets(tmp_path: Path, env: dict[str, str]) -> None:
    error, _ = config_error("[auth]\njwt_secret = 1234567\n", tmp_path, env)
    assert "1234567" not in str(error) and "***" in str(error)

    error, _ = config_error('[database]\nurl = "postgresql://u:hunter2@h:port/db"\n', tmp_path, env)
    assert error.key == "database.url" and "hunter2" not in str(error)

    error, _ = config_error(
        '[message_queue]\ntype = "redis"\nurl = "amqp://u:hunter2@h/"\n', tmp_path, env
    )
    assert "hunter2" not in str(error)


# -- environment and flags --------------------------------------------------------


def test_precedence_file_seed_variable_schedd_variable_flag(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(tmp_path / "s.toml", "[api]\nport = 1001\n")

    assert load_settings(path, env=env).api.port == 1001
    env["API_PORT"] = "1002"
    assert load_settings(path, env=env).api.port == 1002
    env["SCHEDD_API__PORT"] = "1003"
    assert load_settings(path, env=env).api.port == 1003
    assert load_settings(path, env=env, overrides={"api.port": 1004}).api.port == 1004


def test_schedd_variables_reach_every_section(env: dict[str, str]) -> None:
    settings = load_settings(
        env={
            **env,
            "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": "8",
            "schedd_scheduler__scheduling_interval": "0.5",
            "SCHEDD_Retention__Audit_Days": "0",
            "SCHEDD_DATABASE__URL": "postgresql+psycopg://db/sched",
        }
    )

    assert settings.worker.max_concurrent_tasks == 8
    assert settings.scheduler.scheduling_interval == 0.5
    assert settings.retention.audit_days == 0
    assert settings.database.url == "postgresql+psycopg://db/sched"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["shell", "http"]', ["shell", "http"]),
        ("shell, http", ["shell", "http"]),
        ("python", ["python"]),
        ("shell,shell,http", ["shell", "http"]),
    ],
)
def test_list_variables_take_json_or_commas(
    env: dict[str, str], value: str, expected: list[str]
) -> None:
    settings = load_settings(env={**env, "SCHEDD_WORKER__EXECUTOR_TYPES": value})

    assert settings.worker.executor_types == expected


def test_a_json_array_variable_can_empty_a_list(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "s.toml", '[api]\ncors_origins = ["http://a.example"]\n')

    settings = load_settings(path, env={**env, "SCHEDD_API__CORS_ORIGINS": "[]"})

    assert settings.api.cors_origins == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("no", False)],
)
def test_boolean_variables(env: dict[str, str], value: str, expected: bool) -> None:
    settings = load_settings(env={**env, "SCHEDD_OBSERVABILITY__METRICS_AUTH": value})

    assert settings.observability.metrics_auth is expected


def test_an_empty_variable_counts_as_unset(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "s.toml", "[api]\nport = 1001\n")

    settings = load_settings(path, env={**env, "API_PORT": "", "SCHEDD_API__PORT": ""})

    assert settings.api.port == 1001


@pytest.mark.parametrize(
    ("name", "key", "reason"),
    [
        ("SCHEDD_WORKR__ID", "workr", "unknown section 'workr' (did you mean 'worker'?)"),
        ("SCHEDD_API__PROT", "api.prot", "unknown key 'prot' (did you mean 'port'?)"),
        ("SCHEDD_API_PORT", None, "not a setting (did you mean SCHEDD_API__PORT?)"),
        ("SCHEDD_SOURCE__X", "source", "unknown section 'source'"),
    ],
)
def test_unknown_schedd_variables_are_errors(
    tmp_path: Path, env: dict[str, str], name: str, key: str | None, reason: str
) -> None:
    error, _ = config_error(None, tmp_path, {**env, name: "1"})

    assert (error.source, error.key) == (name, key)
    assert reason in error.reason


def test_schedd_config_and_schedd_log_are_not_keys(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "s.toml", "")

    settings = load_settings(env={**env, "SCHEDD_CONFIG": str(path), "SCHEDD_LOG": "debug"})

    assert settings.source == str(path)
    assert settings.observability.log_level == "debug"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("SCHEDD_API__PORT", "api.port"),
        ("API_PORT", "api.port"),
        ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ],
)
def test_a_variable_of_the_wrong_type_is_named(
    tmp_path: Path, env: dict[str, str], name: str, key: str
) -> None:
    error, _ = config_error(None, tmp_path, {**env, name: "abc"})

    assert (error.source, error.key, error.reason) == (name, key, "expected an integer, got 'abc'")


def test_a_bad_json_list_variable_is_named(tmp_path: Path, env: dict[str, str]) -> None:
    error, _ = config_error(None, tmp_path, {**env, "SCHEDD_DAEMON__ROLES": '["api"'})

    assert (error.source, error.key) == ("SCHEDD_DAEMON__ROLES", "daemon.roles")
    assert error.reason.startswith("invalid JSON array")


def test_seed_variables(env: dict[str, str]) -> None:
    settings = load_settings(
        env={
            **env,
            "DATABASE_URL": "postgresql://db/sched",
            "DATABASE_MAX_CONNECTIONS": "20",
            "API_HOST": "0.0.0.0",
            "API_PORT": "9000",
            "JWT_SECRET": SECRET,
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "warning",
        }
    )

    assert settings.database.url == "postgresql://db/sched"
    assert settings.database.max_connections == 20
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 9000)
    assert settings.auth.jwt_secret is not None
    assert settings.auth.jwt_secret.get_secret_value() == SECRET
    assert settings.observability.log_format == "json"
    assert settings.observability.log_level == "warning"


def test_log_level_variables_rank_schedd_log_over_log_level(env: dict[str, str]) -> None:
    both = {**env, "LOG_LEVEL": "error", "SCHEDD_LOG": "debug"}

    assert load_settings(env=both).observability.log_level == "debug"
    full = {**both, "SCHEDD_OBSERVABILITY__LOG_LEVEL": "critical"}
    assert load_settings(env=full).observability.log_level == "critical"


BROKERS = {"RABBITMQ_URL": "amqp://guest:guest@mq:5672/", "REDIS_URL": "redis://cache:6379/0"}


@pytest.mark.parametrize(
    ("broker", "url"),
    [("rabbitmq", BROKERS["RABBITMQ_URL"]), ("redis", BROKERS["REDIS_URL"]), ("database", "")],
)
@pytest.mark.parametrize("chosen_by", ["file", "variable", "flag"])
def test_the_broker_type_picks_rabbitmq_url_or_redis_url(
    tmp_path: Path, env: dict[str, str], broker: str, url: str, chosen_by: str
) -> None:
    path = write(tmp_path / "s.toml", "")
    overrides: dict[str, Any] = {}
    env = {**env, **BROKERS}
    if chosen_by == "file":
        write(path, f'[message_queue]\ntype = "{broker}"\n')
    elif chosen_by == "variable":
        env["SCHEDD_MESSAGE_QUEUE__TYPE"] = broker
    else:
        env["SCHEDD_MESSAGE_QUEUE__TYPE"] = "redis" if broker != "redis" else "rabbitmq"
        overrides["message_queue.type"] = broker

    settings = load_settings(path, env=env, overrides=overrides)

    assert (settings.message_queue.type, settings.message_queue.url) == (broker, url)


def test_rabbitmq_url_alone_does_not_choose_the_broker(env: dict[str, str]) -> None:
    settings = load_settings(env={**env, "RABBITMQ_URL": BROKERS["RABBITMQ_URL"]})

    assert (settings.message_queue.type, settings.message_queue.url) == ("database", "")


def test_schedd_message_queue_url_beats_rabbitmq_url(env: dict[str, str]) -> None:
    settings = load_settings(
        env={
            **env,
            **BROKERS,
            "SCHEDD_MESSAGE_QUEUE__TYPE": "rabbitmq",
            "SCHEDD_MESSAGE_QUEUE__URL": "amqps://mq.example/",
        }
    )

    assert settings.message_queue.url == "amqps://mq.example/"


def test_a_broker_without_url_loads_but_cannot_start(tmp_path: Path, env: dict[str, str]) -> None:
    """The URL is what the roles need, not the value's shape: schedctl finding its API,
    or schedd migrate, load such a file; a start (or config check) refuses it."""
    path = tmp_path / "schedd.toml"
    path.write_text('[message_queue]\ntype = "rabbitmq"\n')
    settings = load_settings(path, env=env)
    assert settings.message_queue.url == ""
    with pytest.raises(ConfigError) as caught:
        preflight.check(settings, ["worker"], host=False)
    error = caught.value
    assert (error.source, error.key) == (str(path), "message_queue.url")
    assert "required when message_queue.type is 'rabbitmq'" in error.reason
    assert "RABBITMQ_URL" in error.reason


def test_a_broker_url_of_the_other_broker_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "SCHEDD_MESSAGE_QUEUE__TYPE": "redis", "SCHEDD_MESSAGE_QUEUE__URL": "amqp://mq/"}

    error, _ = config_error(None, tmp_path, env)

    assert (error.source, error.key) == ("SCHEDD_MESSAGE_QUEUE__URL", "message_queue.url")
    assert error.reason == (
        "unsupported scheme 'amqp' for type 'redis' (expected redis, rediss or unix)"
    )


def test_flags_set_to_none_were_not_given(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "s.toml", "[api]\nport = 1001\n")

    settings = load_settings(path, env=env, overrides={"api.port": None, "api.host": "::1"})

    assert (settings.api.host, settings.api.port) == ("::1", 1001)


def test_flag_strings_are_parsed_like_variables(env: dict[str, str]) -> None:
    settings = load_settings(env=env, overrides={"daemon.roles": "worker", "api.port": "9003"})

    assert (settings.daemon.roles, settings.api.port) == (["worker"], 9003)


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("api.prot", "unknown key 'prot' (did you mean 'port'?)"),
        ("port", "expected a 'section.key' name"),
    ],
)
def test_unknown_flags_are_errors(
    tmp_path: Path, env: dict[str, str], flag: str, reason: str
) -> None:
    error, _ = config_error(None, tmp_path, env, overrides={flag: 1})

    assert (error.source, error.key, error.reason) == ("command line", flag, reason)


def test_check_file_ignores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "s.toml", "[api]\nport = 1001\n")
    monkeypatch.setenv("SCHEDD_API__PORT", "1")

    assert check_file(path).api.port == 1001
    with pytest.raises(ConfigError, match="config file not found"):
        check_file(tmp_path / "missing.toml")


# -- heartbeats and fencing -------------------------------------------------------


def test_heartbeat_timeout_and_fence_follow_the_interval(env: dict[str, str]) -> None:
    settings = load_settings(env={**env, "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "10"})

    assert settings.effective_heartbeat_timeout == 30
    assert settings.effective_fence_seconds == 20
    assert settings.worker.effective_fence_seconds == 20


def test_explicit_heartbeat_timeout_and_fence(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(
        tmp_path / "s.toml", "[scheduler]\nheartbeat_timeout = 120\n[worker]\nfence_seconds = 100\n"
    )

    settings = load_settings(path, env=env)

    assert (settings.effective_heartbeat_timeout, settings.effective_fence_seconds) == (120, 100)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            "[scheduler]\nheartbeat_timeout = 20\n",
            "scheduler.heartbeat_timeout",
            "scheduler.heartbeat_timeout (20s) must be longer than worker.heartbeat_interval (30s)",
        ),
        (
            "[scheduler]\nheartbeat_timeout = 50\n",
            "scheduler.heartbeat_timeout",
            "the worker fence time (60s) must be shorter than the scheduler's heartbeat timeout"
            " (50s)",
        ),
        (
            "[worker]\nfence_seconds = 90\n",
            "worker.fence_seconds",
            "the worker fence time (90s) must be shorter than the scheduler's heartbeat timeout"
            " (90s)",
        ),
        (
            "[worker]\nfence_seconds = 30\n",
            "worker.fence_seconds",
            "worker.fence_seconds (30s) must be longer than worker.heartbeat_interval (30s)",
        ),
    ],
)
def test_heartbeat_relationships(
    tmp_path: Path, env: dict[str, str], text: str, key: str, reason: str
) -> None:
    error, path = config_error(text, tmp_path, env)

    assert (error.source, error.key) == (path, key)
    assert error.reason.startswith(reason)


def test_a_relationship_error_names_the_source_that_set_the_key(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(tmp_path / "s.toml", "[scheduler]\nheartbeat_timeout = 90\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={**env, "SCHEDD_WORKER__FENCE_SECONDS": "95"})
    assert (caught.value.source, caught.value.key) == (
        "SCHEDD_WORKER__FENCE_SECONDS",
        "worker.fence_seconds",
    )


# -- log levels -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "default", "loggers"),
    [
        ("info", logging.INFO, {}),
        ("DEBUG", logging.DEBUG, {}),
        ("info,schedd.scheduler=debug", logging.INFO, {"schedd.scheduler": logging.DEBUG}),
        ("warn, schedd=error,", logging.WARNING, {"schedd": logging.ERROR}),
        ("schedd.worker=trace", logging.INFO, {"schedd.worker": logging.DEBUG}),
    ],
)
def test_log_level_directives(
    env: dict[str, str], text: str, default: int, loggers: dict[str, int]
) -> None:
    settings = load_settings(env={**env, "LOG_LEVEL": text})

    assert settings.observability.log_level == text
    assert parse_directives(settings.observability.log_level) == (default, loggers)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("verbose", "unknown log level 'verbose'"),
        ("info,schedd=loud", "unknown log level 'loud'"),
        ("info,schedd.scheduler=", "unknown log level ''"),
    ],
)
def test_bad_log_level_directives(
    tmp_path: Path, env: dict[str, str], text: str, reason: str
) -> None:
    error, _ = config_error(None, tmp_path, {**env, "SCHEDD_LOG": text})

    assert (error.source, error.key) == ("SCHEDD_LOG", "observability.log_level")
    assert error.reason.startswith(reason)


# -- rendering --------------------------------------------------------------------


def test_render_toml_redacts_the_secret_and_url_passwords(env: dict[str, str]) -> None:
    settings = load_settings(
        env={
            **env,
            "JWT_SECRET": SECRET,
            "DATABASE_URL": "postgresql://sched:db-pass-1@db/sched?password=db-pass-2",
            "SCHEDD_MESSAGE_QUEUE__TYPE": "rabbitmq",
            "RABBITMQ_URL": "amqp://guest:mq-pass@mq:5672/",
        }
    )

    text = render_toml(settings)

    for secret in (SECRET, "db-pass-1", "db-pass-2", "mq-pass"):
        assert secret not in text
    document = tomllib.loads(text)
    assert document["auth"]["jwt_secret"] == "***"
    assert document["database"]["url"] == "postgresql://sched:***@db/sched?password=***"
    assert document["message_queue"]["url"] == "amqp://guest:***@mq:5672/"


def test_render_toml_leaves_out_unset_keys(env: dict[str, str]) -> None:
    document = tomllib.loads(render_toml(load_settings(env=env)))

    assert "jwt_secret" not in document["auth"]
    assert "heartbeat_timeout" not in document["scheduler"]
    assert "source" not in document
    assert document["database"]["url"].startswith("sqlite:////")


def test_unredacted_render_round_trips(tmp_path: Path, env: dict[str, str]) -> None:
    settings = load_settings(
        env={
            **env,
            "JWT_SECRET": SECRET,
            "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "100",
            "SCHEDD_WORKER__TASK_TYPES": "shell,reports",
            "SCHEDD_API__CORS_ORIGINS": "http://localhost:3000",
        }
    )
    path = write(tmp_path / "out.toml", render_toml(settings, redact=False))

    assert load_settings(path, env=env).model_dump() == settings.model_dump()


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("sqlite:////var/lib/sched/sched.db", "sqlite:////var/lib/sched/sched.db"),
        ("postgresql://u:p/w@d@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user@cache", "redis://user@cache"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


# -- sections on their own --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sqlalchemy_url"),
    [
        ("sqlite:///rel.db", "sqlite:///rel.db"),
        ("sqlite+pysqlite:////abs.db", "sqlite+pysqlite:////abs.db"),
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
    ],
)
def test_database_urls(url: str, sqlalchemy_url: str) -> None:
    database = DatabaseSettings(url=url)

    assert (database.url, database.sqlalchemy_url) == (url, sqlalchemy_url)
    assert database.is_sqlite == url.startswith("sqlite")


def test_task_types_default_to_the_executor_types(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "s.toml", '[worker]\nexecutor_types = ["shell"]\n')

    assert load_settings(path, env=env).effective_task_types == ["shell"]
    flags = {"worker.task_types": ["reports", "shell"]}
    assert load_settings(path, env=env, overrides=flags).effective_task_types == [
        "reports",
        "shell",
    ]


# -- the shipped etc/schedd.toml --------------------------------------------------

KEY_LINE = re.compile(r"^(# )?(\w+) = (.*)$")


def documented_keys() -> dict[tuple[str, str], tuple[bool, str]]:
    """(section, key) -> (commented out, line) for every key line in the shipped file."""
    found: dict[tuple[str, str], tuple[bool, str]] = {}
    section = ""
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        if header := re.match(r"^\[(\w+)\]$", line):
            section = header.group(1)
        elif match := KEY_LINE.match(line):
            found[(section, match.group(2))] = (bool(match.group(1)), line.removeprefix("# "))
    return found


def all_keys() -> set[tuple[str, str]]:
    return {
        (section, key)
        for section, model in configfile.sections(Settings).items()
        for key in model.model_fields
    }


def test_shipped_config_loads_to_the_defaults(env: dict[str, str]) -> None:
    settings = load_settings(SHIPPED, env=env)

    assert settings.source == str(SHIPPED)
    assert settings.model_dump() == load_settings(env=env).model_dump()


def test_shipped_config_documents_every_key() -> None:
    text = SHIPPED.read_text(encoding="utf-8")

    assert set(documented_keys()) == all_keys()
    for section, key in all_keys():
        assert configfile.env_var(section, key) in text, f"{section}.{key} lacks its variable"


def test_shipped_config_examples_are_valid(tmp_path: Path, env: dict[str, str]) -> None:
    tables: dict[str, list[str]] = {}
    for (section, _), (_, line) in documented_keys().items():
        tables.setdefault(section, []).append(line)
    text = "".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in tables.items())
    path = write(tmp_path / "uncommented.toml", text)

    settings = load_settings(path, env=env)

    assert settings.scheduler.heartbeat_timeout == 90
    assert settings.auth.jwt_secret is not None


@pytest.mark.parametrize("name", ["DATABASE_URL", "JWT_SECRET", "SCHEDD_API__PORT", "A-B", "1X"])
def test_env_passthrough_refuses_the_daemon_secrets_and_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="worker.env_passthrough"):
        load_settings(None, env={"SCHEDD_WORKER__ENV_PASSTHROUGH": f'["{name}"]'})


def test_the_alerts_example_is_a_valid_configuration(env: dict[str, str]) -> None:
    example = SHIPPED.with_name("alerts.example.toml")

    settings = load_settings(example, env=env)

    assert set(settings.notify.channels) == {"ops-mail", "chat"}
    assert settings.notify.default == {"failed": ["ops-mail"], "recovered": ["chat"]}
    readme = SHIPPED.parents[1] / "README.md"
    assert example.read_text(encoding="utf-8") in readme.read_text(encoding="utf-8")


def test_the_broker_namespace_comes_from_the_database_unless_set(
    env: dict[str, str], tmp_path: Path
) -> None:
    def namespace(**extra: str) -> str:
        return load_settings(None, env={**env, **extra}).broker_namespace

    assert namespace(DATABASE_URL="postgresql://u:p@db.internal:5432/sched") == "sched"
    # However a process reaches the server, the same database gives the same name.
    assert namespace(DATABASE_URL="postgres://10.0.0.5/sched.staging") == "sched_staging"
    one = namespace(DATABASE_URL=f"sqlite:///{tmp_path / 'a' / 'sched.db'}")
    two = namespace(DATABASE_URL=f"sqlite:///{tmp_path / 'b' / 'sched.db'}")
    assert one.startswith("sched-") and two.startswith("sched-") and one != two
    assert namespace(SCHEDD_MESSAGE_QUEUE__NAMESPACE="blue-1") == "blue-1"
