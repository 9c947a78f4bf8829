"""The email, slack and command channels against real receivers on loopback: an SMTP
server (aiosmtpd) with STARTTLS, implicit TLS and login, a chat receiver, and
programs run as a command channel."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as Mail
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from schedd.alerts.channels import SendError, send
from schedd.alerts.message import event_message
from schedd.alerts.notifier import Notifier
from schedd.config import Settings
from schedd.db import Database, create_database
from tests.alertkit import Receiver, add_ended_runs, free_port, notify_settings
from tests.schedctlkit import migrated_sqlite
from tests.scheduler_support import at, new_task

PASSWORD_ENV = "SCHED_TEST_SMTP_PASSWORD"
DETAILS: dict[str, Any] = {
    "event": "failed",
    "task": {"id": 1, "name": "backup; $(touch /tmp/sched-pwned)"},
    "run": {"id": 9, "status": "failed", "exit_code": 3, "duration_seconds": 2.0},
    "host": "db1",
    "logs_command": "schedctl run logs 9",
}


@dataclass
class Mailbox:
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.mails.append(message_from_bytes(envelope.original_content or b""))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"mail-secret")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server that requires STARTTLS and a login."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context(certificate),
        require_starttls=True,
        auth_required=True,
        authenticator=mailbox.authenticate,
    )
    controller.start()
    yield mailbox, port
    controller.stop()


def mail_channel(port: int, certificate: tuple[Path, Path], **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "username": "sched",
        "password_env": PASSWORD_ENV,
        "sender": "sched@example.com",
        "to": ["ops@example.com", "oncall@example.com"],
        "ca_file": str(certificate[0]),
        "timeout_seconds": 5,
        **extra,
    }


def test_a_failure_is_mailed_over_starttls_with_login(
    tmp_path: Path,
    smtp: tuple[Mailbox, int],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "mail-secret")
    mailbox, port = smtp
    db: Database = create_database(migrated_sqlite(tmp_path / "sched.db"))
    settings = notify_settings({"mail": mail_channel(port, certificate)})
    task_id = new_task(db, "backup", notify={"failed": ["mail"]})
    add_ended_runs(db, task_id, 1, status="failed", at=at(0), worker_id="w1")

    Notifier(db, settings).run_pass(at(1))
    db.dispose()

    (mail,) = mailbox.mails
    assert mailbox.logins == [(b"sched", b"mail-secret")]
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["Subject"].startswith("[sched] FAILED: backup (run ")
    body = mail.get_payload(decode=True).decode()
    assert "exit code 2" in body and "schedctl run logs" in body


def test_mail_errors_name_the_cause(
    smtp: tuple[Mailbox, int], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = smtp
    message = event_message(DETAILS, 1, "mail")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(SendError, match=f"{PASSWORD_ENV} \\(password_env\\) is not set"):
        send(_channel(port, certificate), message, _settings())
    # Without the CA the server's certificate is not trusted: no mail, no password sent.
    monkeypatch.setenv(PASSWORD_ENV, "mail-secret")
    with pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED"):
        send(_channel(port, certificate, ca_file=None), message, _settings())


def _settings() -> Settings:
    return notify_settings({})


def _channel(port: int, certificate: tuple[Path, Path], **extra: Any) -> Any:
    settings = notify_settings({"mail": mail_channel(port, certificate, **extra)})
    return settings.notify.channels["mail"]


def test_implicit_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=tls_context(certificate),
        server_hostname="127.0.0.1",
        authenticator=mailbox.authenticate,
        # The whole connection is TLS, which aiosmtpd's own TLS check cannot see.
        auth_require_tls=False,
    )
    controller.start()
    monkeypatch.setenv(PASSWORD_ENV, "mail-secret")
    try:
        send(
            _channel(port, certificate, security="tls"), event_message(DETAILS, 1, "m"), _settings()
        )
    finally:
        controller.stop()
    assert len(mailbox.mails) == 1


def test_slack_format(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver().start()
    monkeypatch.setenv("SCHED_TEST_CHAT_URL", receiver.url + "/services/T0/B0/x")
    settings = notify_settings({"chat": {"type": "slack", "url_env": "SCHED_TEST_CHAT_URL"}})
    try:
        send(settings.notify.channels["chat"], event_message(DETAILS, 1, "chat"), settings)
    finally:
        receiver.stop()
    (message,) = receiver.messages()
    assert set(message.json) == {"text"}
    assert "FAILED: backup" in message.json["text"] and "Host: db1" in message.json["text"]


def test_a_command_gets_the_event_on_stdin_with_the_task_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "event.json"
    script = tmp_path / "page.py"
    script.write_text(
        "import json, os, sys\n"
        "event = json.load(sys.stdin)\n"
        "seen = {'event': event, 'env': dict(os.environ), 'argv': sys.argv}\n"
        f"json.dump(seen, open({str(out)!r}, 'w'))\n"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/sched")
    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    settings = notify_settings(
        {"page": {"type": "command", "command": [sys.executable, str(script), "--team", "ops"]}}
    )

    send(settings.notify.channels["page"], event_message(DETAILS, 4, "page"), settings)

    seen = json.loads(out.read_text())
    assert seen["event"]["task"]["name"] == "backup; $(touch /tmp/sched-pwned)"
    assert seen["event"]["delivery_id"] == 4
    assert seen["argv"][1:] == ["--team", "ops"]
    assert seen["env"]["SCHED_EVENT"] == "failed"
    assert "DATABASE_URL" not in seen["env"] and "JWT_SECRET" not in seen["env"]
    assert not Path("/tmp/sched-pwned").exists()


def test_a_failing_or_hanging_command_is_an_error(tmp_path: Path) -> None:
    settings = notify_settings(
        {
            "fails": {"type": "command", "command": ["sh", "-c", "echo no route; exit 3"]},
            "hangs": {"type": "command", "command": ["sleep", "30"], "timeout_seconds": 0.5},
            "missing": {"type": "command", "command": [str(tmp_path / "nope")]},
        }
    )
    message = event_message(DETAILS, 1, "x")
    with pytest.raises(SendError, match="exit code 3.*no route"):
        send(settings.notify.channels["fails"], message, settings)
    started = time.monotonic()
    with pytest.raises(SendError, match="did not finish within 0.5s"):
        send(settings.notify.channels["hangs"], message, settings)
    assert time.monotonic() - started < 5
    with pytest.raises(SendError):
        send(settings.notify.channels["missing"], message, settings)
