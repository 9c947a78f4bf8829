"""Alert configuration, rules and messages, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedd.alerts.channels import shown_url, signature
from schedd.alerts.message import digest_message, event_message
from schedd.alerts.rules import duration_seconds, effective, parse_rules
from schedd.config import load_settings
from schedd.errors import ConfigError


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "schedd.toml"
    path.write_text(text)
    return load_settings(path, env={"HOME": str(tmp_path), **(env or {})})


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            '[notify.channels.m]\ntype = "email"\nsmtp_host = "h"\nurl = "https://x"\n',
            "notify.channels.m.url",
            "is not used by email channels",
        ),
        (
            '[notify.channels.h]\ntype = "webhook"\nurl = "https://u:p@x/y"\n',
            "notify.channels.h.url",
            "user information",
        ),
        ('[notify.channels.h]\ntype = "webhook"\n', "notify.channels.h.url", "url or url_env"),
        (
            '[notify.channels.h]\ntype = "webhook"\nurl = "https://x"\nsecret_env = "a b"\n',
            "notify.channels.h.secret_env",
            "not an environment variable name",
        ),
        (
            '[notify]\ndefault = { failed = ["nope"] }\n',
            "notify.default",
            "not configured: nope",
        ),
        (
            '[notify]\ndefault = { broke = ["x"] }\n',
            "notify.default",
            "broke: unknown key",
        ),
        ('[notify.channels.c]\ntype = "command"\n', "notify.channels.c.command", "needs command"),
    ],
)
def test_bad_notify_configuration_names_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert "p@" not in str(caught.value)


def test_channels_can_come_from_the_environment_as_json(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "",
        {"SCHEDD_NOTIFY__CHANNELS": '{"c": {"type": "command", "command": ["true"]}}'},
    )
    assert settings.notify.channels["c"].command == ["true"]  # type: ignore[attr-defined]


def test_rules_merge_key_by_key_and_durations_parse() -> None:
    default = parse_rules({"failed": ["mail"], "recovered": ["chat"], "grace": "30m"})
    merged = effective({"failed": [], "absent": ["mail"]}, default)

    assert merged.channels("failed") == []
    assert merged.channels("recovered") == ["chat"]
    assert merged.grace_seconds == 1800
    assert [duration_seconds(v) for v in ("90s", "25h", "2d", "1w", 60)] == [
        90,
        90000,
        172800,
        604800,
        60,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("soon")
    with pytest.raises(ValueError, match="expect_every"):
        parse_rules({"expect_every": "0s"})


def test_messages_say_what_an_operator_needs() -> None:
    details = {
        "event": "failed",
        "task": {"id": 3, "name": "backup"},
        "run": {"id": 42, "status": "failed", "exit_code": 2, "duration_seconds": 75.0},
        "host": "db1",
        "output_tail": "disk full",
        "logs_command": "schedctl run logs 42",
    }
    message = event_message(details, 7, "mail")
    assert message.subject == "[sched] FAILED: backup (run 42: failed, exit code 2)"
    for text in ("Host: db1", "Duration: 75.0 s", "  disk full", "schedctl run logs 42"):
        assert text in message.text
    digest = digest_message([details] * 3, 8, "mail")
    assert digest.document["count"] == 3 and digest.document["tasks"] == {"backup": 3}


def test_urls_show_scheme_and_host_only_and_signatures_are_hmac_sha256() -> None:
    assert shown_url("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/***"
    assert shown_url("https://u:p@h:8443/x?token=1") == "https://h:8443/***"
    # RFC 2104 HMAC-SHA256 of b"body" with key b"k" (computed independently).
    assert signature("k", b"body") == (
        "sha256=c6d811ef3aeb02437cd423f1abe13209041864630bdc4e2c04def5c7b0031a23"
    )


def test_config_show_hides_a_channel_urls_path(tmp_path: Path) -> None:
    from schedd.config import render_toml

    settings = load(
        tmp_path,
        '[notify.channels.chat]\ntype = "slack"\nurl = "https://hooks.slack.com/services/T/B/XYZ"\n'
        '[database]\nurl = "postgresql://u:pw@db.example.com/sched"\n',
    )

    shown = render_toml(settings)  # type: ignore[arg-type]

    assert 'url = "https://hooks.slack.com/***"' in shown
    assert "XYZ" not in shown
    assert 'url = "postgresql://u:***@db.example.com/sched"' in shown
