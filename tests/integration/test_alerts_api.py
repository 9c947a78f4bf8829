"""The alert API (/api/notify) and `schedctl notify` against a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.alerts.notifier import Notifier
from schedd.db import create_database
from tests.alertkit import SECRET, SECRET_ENV, Receiver, add_ended_runs, free_port, hook
from tests.apikit import ApiEnv, api_env, task_body
from tests.schedctlkit import Cli, migrated_sqlite, one_line
from tests.scheduler_support import at, new_task


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def channels(receiver: Receiver) -> dict[str, dict[str, object]]:
    return {
        "hook": hook(receiver.url + "/T000/B000/secret-path"),
        "gone": hook(f"http://127.0.0.1:{free_port()}/x", timeout_seconds=2),
    }


@pytest.fixture
def env(tmp_path: Path, receiver: Receiver) -> Iterator[ApiEnv]:
    database = create_database(migrated_sqlite(tmp_path / "api.db"))
    notify = {"channels": channels(receiver), "http_allow": ["127.0.0.1"]}
    with api_env(database, tmp_path, notify=notify) as ready:
        yield ready
    database.dispose()


def test_channels_are_listed_without_their_url_path(env: ApiEnv, receiver: Receiver) -> None:
    reader = env.auth(env.key("system.read"))

    answer = env.client.get("/api/notify/channels", headers=reader)

    assert answer.status_code == 200
    hook_channel = next(c for c in answer.json() if c["name"] == "hook")
    assert hook_channel["target"] == f"http://127.0.0.1:{receiver.port}/***"
    assert "secret-path" not in answer.text
    assert hook_channel["secrets"] == {SECRET_ENV: True}


def test_a_test_message_needs_system_write_and_reports_the_receivers_error(
    env: ApiEnv, receiver: Receiver
) -> None:
    reader = env.auth(env.key("system.read"))
    writer = env.auth(env.key("system.write"))

    assert env.client.post("/api/notify/channels/hook/test", headers=reader).status_code == 403
    sent = env.client.post("/api/notify/channels/hook/test", headers=writer)
    down = env.client.post("/api/notify/channels/gone/test", headers=writer)
    missing = env.client.post("/api/notify/channels/nope/test", headers=writer)

    assert sent.status_code == 200 and sent.json()["delivered"] is True
    (message,) = receiver.messages()
    assert message.signed() and message.json["event"] == "test"
    assert down.status_code == 503
    assert "channel gone" in down.json()["message"]
    assert "ConnectError" in down.json()["message"]
    assert missing.status_code == 404
    assert "hook" in missing.json()["message"]


def test_a_task_naming_an_unknown_channel_is_refused(env: ApiEnv) -> None:
    answer = env.client.post(
        "/api/tasks", json=task_body(notify={"failed": ["pager"]}), headers=env.admin
    )
    bad_key = env.client.post(
        "/api/tasks", json=task_body(notify={"fail": ["hook"]}), headers=env.admin
    )
    good = env.client.post(
        "/api/tasks",
        json=task_body(notify={"failed": ["hook"], "expect_every": "25h"}),
        headers=env.admin,
    )

    assert answer.status_code == 422
    assert "no channel named 'pager'" in answer.json()["message"]
    assert bad_key.status_code == 422
    assert "notify" in bad_key.json()["message"]
    assert good.status_code == 201
    assert good.json()["notify"] == {"failed": ["hook"], "expect_every": "25h"}


def test_deliveries_are_listed_with_their_state(env: ApiEnv, receiver: Receiver) -> None:
    task_id = new_task(env.db, "backup", notify={"failed": ["hook", "gone"]})
    add_ended_runs(env.db, task_id, 1, status="failed", at=at(0))
    Notifier(env.db, env.settings).run_pass(at(1))
    reader = env.auth(env.key("system.read"))

    every = env.client.get("/api/notify/deliveries", headers=reader).json()
    failing = env.client.get(
        "/api/notify/deliveries", params={"status": "pending", "task": "backup"}, headers=reader
    ).json()
    bad = env.client.get("/api/notify/deliveries", params={"status": "lost"}, headers=reader)

    assert every["total"] == 2
    assert {(d["channel"], d["state"]) for d in every["items"]} == {
        ("hook", "sent"),
        ("gone", "pending"),
    }
    (pending,) = failing["items"]
    assert pending["task_name"] == "backup" and pending["attempts"] == 1
    assert "ConnectError" in pending["last_error"]
    assert bad.status_code == 422


def test_schedctl_notify_in_direct_mode(tmp_path: Path, receiver: Receiver) -> None:
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    config = tmp_path / "schedd.toml"
    config.write_text(
        "[notify]\n"
        'http_allow = ["127.0.0.1"]\n'
        "[notify.channels.hook]\n"
        'type = "webhook"\n'
        f'url = "{receiver.url}/secret-path"\n'
        f'secret_env = "{SECRET_ENV}"\n'
        "[notify.channels.gone]\n"
        'type = "webhook"\n'
        f'url = "http://127.0.0.1:{free_port()}/x"\n'
    )
    env = {"SCHEDD_CONFIG": str(config), SECRET_ENV: SECRET}

    listed = cli.json("notify", "channels", env=env)
    sent = cli("notify", "test", "hook", env=env)
    failed = cli("notify", "test", "gone", env=env)
    deliveries = cli.json("notify", "list", "--status", "failed", env=env)

    assert [c["name"] for c in listed] == ["gone", "hook"]
    assert "secret-path" not in str(listed)
    assert sent.exit_code == 0, sent.output
    assert "delivered a test message to channel hook" in sent.stdout
    assert len(receiver.messages()) == 1
    assert failed.exit_code == 69
    assert "channel gone" in one_line(failed)
    assert deliveries["items"] == []


def test_notifier_runs_in_api_and_scheduler_processes_only(tmp_path: Path) -> None:
    from schedd.daemon import Context, start_notifier, stop_notifier
    from tests.alertkit import notify_settings
    from tests.apikit import RecordingBroker

    db = create_database(migrated_sqlite(tmp_path / "sched.db"))
    settings = notify_settings({"hook": hook("http://127.0.0.1:9/x")})
    ctx = Context(settings=settings, db=db, broker=RecordingBroker())
    assert start_notifier(ctx, ["worker"]) is None
    running = start_notifier(ctx, ["api"])
    assert running is not None
    stop_notifier(running)
    db.dispose()
