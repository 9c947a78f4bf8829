"""observability.metrics_listen: validation, and the listener on a real socket."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from schedd import configfile
from schedd.config import load_settings
from schedd.errors import ConfigError, Unavailable
from schedd.metricsserver import MetricsListener, start_listener


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(configfile, "SYSTEM_CONFIG", tmp_path / "etc" / "schedd.toml")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home")}


def test_off_by_default(env: dict[str, str]) -> None:
    settings = load_settings(env=env)
    assert settings.observability.metrics_listen == ""
    assert settings.observability.metrics_address is None


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (" 127.0.0.1:9464 ", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:9464", ("::", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        ("metrics.internal:65535", ("metrics.internal", 65535)),
    ],
)
def test_good_addresses(env: dict[str, str], value: str, address: tuple[str, int]) -> None:
    settings = load_settings(env={**env, "SCHEDD_OBSERVABILITY__METRICS_LISTEN": value})
    assert settings.observability.metrics_address == address


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9464", "not an address with a port"),
        ("127.0.0.1", "not an address with a port"),
        ("[::1]", "not an address with a port"),
        ("http://127.0.0.1:9464", "not an address with a port"),
        ("127.0.0.1:9464/metrics", "not an address with a port"),
        ("::1:9464", "an IPv6 address goes in brackets"),
        ("[1.2.3.4]:9464", "not an IPv6 address"),
        ("300.1.1.1:9464", "not an IPv4 address"),
        ("bad host:9464", "not a host name"),
        ("127.0.0.1:0", "port must be 1-65535"),
        ("127.0.0.1:65536", "port must be 1-65535"),
        ("127.0.0.1:http", "port must be 1-65535"),
        ("127.0.0.1:", "port must be 1-65535"),
    ],
)
def test_bad_address_in_a_file_is_one_line_naming_file_and_key(
    tmp_path: Path, env: dict[str, str], value: str, reason: str
) -> None:
    path = tmp_path / "schedd.toml"
    path.write_text(f"[observability]\nmetrics_listen = {value!r}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    error = caught.value
    assert (error.source, error.key) == (str(path), "observability.metrics_listen")
    assert error.reason.startswith(reason)
    assert "'127.0.0.1:9464'" in error.reason  # the example of what is expected
    assert "\n" not in str(error)


def test_bad_address_in_a_variable_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={**env, "SCHEDD_OBSERVABILITY__METRICS_LISTEN": "nope"})
    assert caught.value.source == "SCHEDD_OBSERVABILITY__METRICS_LISTEN"
    assert caught.value.key == "observability.metrics_listen"


def test_not_a_string_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "schedd.toml"
    path.write_text("[observability]\nmetrics_listen = 9464\n")
    with pytest.raises(ConfigError, match=r"observability\.metrics_listen"):
        load_settings(path, env=env)


# -- the listener --------------------------------------------------------------------


def test_listener_serves_this_process_registry_and_stops() -> None:
    listener = MetricsListener("127.0.0.1", 0)
    listener.start()
    url = listener.url
    try:
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "python_info" in response.text  # the default registry's collectors
    finally:
        listener.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=1)


def test_a_port_in_use_is_unavailable_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable) as caught:
            MetricsListener("127.0.0.1", port).start()
    message = str(caught.value)
    assert message.startswith(f"observability.metrics_listen: cannot listen on 127.0.0.1:{port}: ")
    assert "\n" not in message


def test_disabled_metrics_serve_nothing_and_say_so(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        env={
            **env,
            "SCHEDD_OBSERVABILITY__METRICS_LISTEN": "127.0.0.1:9464",
            "SCHEDD_OBSERVABILITY__METRICS_ENABLED": "false",
        }
    )
    with caplog.at_level("INFO", logger="schedd.metrics"):
        assert start_listener(settings.observability) is None
    assert "metrics_enabled is false: no metrics are served" in caplog.text


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_metrics_auth_warns_when_the_listener_is_not_on_loopback(
    env: dict[str, str], caplog: pytest.LogCaptureFixture, host: str, warned: bool
) -> None:
    settings = load_settings(
        env={
            **env,
            "SCHEDD_OBSERVABILITY__METRICS_LISTEN": f"{host}:{_free_port(host)}",
            "SCHEDD_OBSERVABILITY__METRICS_AUTH": "true",
        }
    )
    with caplog.at_level("INFO", logger="schedd.metrics"):
        listener = start_listener(settings.observability)
    assert listener is not None
    listener.stop()
    assert "(no authentication)" in caplog.text
    assert ("metrics_auth covers the API's /metrics only" in caplog.text) is warned
