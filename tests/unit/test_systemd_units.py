"""The systemd units in etc/: required keys, consistent stop timeouts, systemd-analyze."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from schedd.config import load_settings

ETC = Path(__file__).resolve().parents[2] / "etc"
UNITS = {
    "schedd.service": ["api", "scheduler", "worker"],
    "schedd-api.service": ["api"],
    "schedd-scheduler.service": ["scheduler"],
    "schedd-worker@.service": ["worker"],
}


def load(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ETC / name).read_text())
    return parser


def test_every_unit_is_there() -> None:
    assert sorted(p.name for p in ETC.glob("*.service")) == sorted(UNITS)


@pytest.mark.parametrize(("name", "roles"), UNITS.items())
def test_unit_has_the_required_keys(name: str, roles: list[str]) -> None:
    unit = load(name)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert service["User"] == "sched"
    assert service["EnvironmentFile"] == "-/etc/schedd/schedd.env"
    assert service["NoNewPrivileges"] == "yes"
    exec_start = service["ExecStart"].split()
    assert exec_start[:4] == ["/usr/local/bin/schedd", "run", "--config", "/etc/schedd/schedd.toml"]
    assert [exec_start[i + 1] for i, a in enumerate(exec_start) if a == "--role"] == roles
    assert "78" in service["RestartPreventExitStatus"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("name", [n for n, roles in UNITS.items() if "worker" in roles])
def test_worker_units_let_the_worker_drain(name: str) -> None:
    """SIGTERM to schedd only, and time for drain_grace + kill_grace before SIGKILL."""
    service = load(name)["Service"]
    assert service["KillMode"] == "mixed"
    stop_timeout = float(service["TimeoutStopSec"].removesuffix("s"))
    env = {"JWT_SECRET": "j" * 40, "RABBITMQ_URL": "amqp://mq/"}
    for config in ("schedd.toml", "schedd.production.toml"):
        worker = load_settings(ETC / config, env=env).worker
        assert stop_timeout > worker.drain_grace_seconds + worker.kill_grace_seconds, config
    # Tasks may need /home and the host's /tmp: the worker's hardening leaves them.
    assert service["ProtectHome"] == "no" and service["PrivateTmp"] == "no"
    assert service["ProtectSystem"] == "full"


@pytest.mark.parametrize("name", [n for n, roles in UNITS.items() if "worker" in roles])
def test_worker_units_may_switch_users_and_own_their_cgroup(name: str) -> None:
    """Just what run isolation needs: switch to worker.run_as, signal its processes,
    make per-run cgroups under the delegated unit cgroup; tasks get none of it."""
    service = load(name)["Service"]
    wanted = {"CAP_SETUID", "CAP_SETGID", "CAP_KILL"}
    assert set(service["AmbientCapabilities"].split()) == wanted
    assert set(service["CapabilityBoundingSet"].split()) == wanted
    assert service["Delegate"] == "yes"
    assert service["ProtectControlGroups"] == "no"  # else the delegated cgroup is read-only
    assert service["StateDirectoryMode"] == "0700"


@pytest.mark.parametrize("name", [n for n, roles in UNITS.items() if "worker" not in roles])
def test_units_without_a_worker_hold_no_capability(name: str) -> None:
    service = load(name)["Service"]
    assert "AmbientCapabilities" not in service and "Delegate" not in service


def test_each_worker_instance_gets_its_own_id() -> None:
    environment = load("schedd-worker@.service")["Service"]["Environment"]
    assert environment.startswith("SCHEDD_WORKER__ID=") and "%i" in environment


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at a real program; the template is
    # verified as an instance.
    names = []
    for name in UNITS:
        text = (ETC / name).read_text().replace("/usr/local/bin/schedd", "/bin/true")
        target = name.replace("@.", "@1.")
        (tmp_path / target).write_text(text)
        names.append(f"./{target}")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # A bad value is only a warning for systemd (exit 0): any output is a failure here.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
