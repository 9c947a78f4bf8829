"""Channel senders: one function per channel type, each raising SendError on failure.

- ``webhook``: POST of the JSON document; with ``secret_env`` an
  ``X-Sched-Signature: sha256=<hex>`` header, the HMAC-SHA256 of the exact body with
  the secret from that environment variable.
- ``slack``: POST ``{"text": ...}`` (Slack incoming webhooks; Mattermost and
  Rocket.Chat accept the same).
- ``email``: SMTP with STARTTLS (default, port 587), implicit TLS (465) or none (25),
  LOGIN with ``username`` and the password from ``password_env``.
- ``command``: the program runs like a task (the worker's run user and environment
  allowlist, PR_SET_PDEATHSIG, no capabilities, its own process group); the JSON
  document is its standard input, never part of its argv (no shell, no injection).

HTTP goes through the same outbound policy as the http executor (public addresses
only unless ``notify.http_allow`` opens more), to the checked address.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import signal
import smtplib
import ssl
import subprocess
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from schedd import __version__
from schedd.alerts.message import Message
from schedd.config import ChannelSettings, Settings
from schedd.errors import ConfigError
from schedd.executors.http import RequestFailed, pinned
from schedd.executors.launch import launch_command
from schedd.executors.netpolicy import OutboundPolicy
from schedd.executors.process import inherited_environment
from schedd.redact import redact_text, redact_url_path

ALLOW_KEY = "notify.http_allow"
SIGNATURE_HEADER = "X-Sched-Signature"


@functools.cache
def _tls() -> ssl.SSLContext:
    """The system's CA certificates, loaded once (not per message)."""
    return ssl.create_default_context()


class SendError(Exception):
    """Why a message was not delivered, as one line."""


def _env(name: str, key: str, env: Mapping[str, str]) -> str:
    value = env.get(name, "")
    if not value:
        raise SendError(f"environment variable {name} ({key}) is not set")
    return value


def channel_url(channel: ChannelSettings, env: Mapping[str, str] = os.environ) -> str:
    if channel.url is not None:
        return channel.url
    assert channel.url_env is not None
    return _env(channel.url_env, "url_env", env)


def shown_url(url: str) -> str:
    """A channel URL as shown anywhere: scheme and host only (the path of a chat
    webhook is its secret)."""
    return redact_url_path(url)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(
    channel: ChannelSettings,
    message: Message,
    settings: Settings,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Deliver ``message`` through ``channel``; SendError saying why not."""
    if channel.type == "webhook":
        body = json.dumps(message.document, sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json", "X-Sched-Event": message.event}
        if channel.secret_env is not None:
            headers[SIGNATURE_HEADER] = signature(_env(channel.secret_env, "secret_env", env), body)
        _post(channel, body, headers, settings, env)
    elif channel.type == "slack":
        body = json.dumps({"text": f"*{message.subject}*\n```\n{message.text}\n```"}).encode()
        _post(channel, body, {"Content-Type": "application/json"}, settings, env)
    elif channel.type == "email":
        _mail(channel, message, env)
    else:
        _command(channel, message, settings)


def _post(
    channel: ChannelSettings,
    body: bytes,
    headers: dict[str, str],
    settings: Settings,
    env: Mapping[str, str],
) -> None:
    text = channel_url(channel, env)
    shown = shown_url(text)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise SendError(f"invalid URL {shown}") from None
    policy = OutboundPolicy(settings.notify.http_allow, key=ALLOW_KEY)
    headers = {**headers, "User-Agent": f"sched/{__version__}"}
    try:
        target, headers, extensions = pinned(url, headers, policy)
    except RequestFailed as exc:
        raise SendError(redact_text(str(exc))) from None
    try:
        with httpx.Client(
            timeout=channel.timeout_seconds, follow_redirects=False, trust_env=False, verify=_tls()
        ) as client:
            response = client.post(target, content=body, headers=headers, extensions=extensions)
    except httpx.TimeoutException:
        raise SendError(f"{shown}: no answer within {channel.timeout_seconds:g}s") from None
    except httpx.HTTPError as exc:
        raise SendError(f"{shown}: {type(exc).__name__}: {redact_text(str(exc))}") from None
    if not 200 <= response.status_code < 300:
        answer = " ".join(response.text.split())[:200]
        raise SendError(
            f"{shown}: HTTP {response.status_code} {response.reason_phrase} {answer}".rstrip()
        )


def _mail(channel: ChannelSettings, message: Message, env: Mapping[str, str]) -> None:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="sched")
    mail["X-Sched-Event"] = message.event
    mail.set_content(message.text)
    host = channel.smtp_host or ""
    context = ssl.create_default_context(cafile=channel.ca_file)
    password = (
        _env(channel.password_env, "password_env", env) if channel.password_env is not None else ""
    )
    timeout = channel.timeout_seconds
    try:
        smtp: smtplib.SMTP
        if channel.security == "tls":
            smtp = smtplib.SMTP_SSL(
                host, channel.smtp_port or 465, timeout=timeout, context=context
            )
        else:
            default = 587 if channel.security == "starttls" else 25
            smtp = smtplib.SMTP(host, channel.smtp_port or default, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if channel.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if channel.username is not None:
                smtp.login(channel.username, password)
            smtp.send_message(mail)
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        detail = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        raise SendError(f"SMTP {host}: {exc.smtp_code} {detail}".strip()) from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise SendError(f"SMTP {host}: {type(exc).__name__}: {exc}") from None


def _command(channel: ChannelSettings, message: Message, settings: Settings) -> None:
    # Imported here: the worker's run-user logic pulls in the executors' identity code.
    from schedd.executors.runas import check_run_as

    try:
        user = check_run_as(settings)
    except ConfigError as exc:
        raise SendError(f"cannot run the command: {exc}") from None
    env = inherited_environment(user=user, passthrough=settings.worker.env_passthrough)
    env["SCHED_EVENT"] = message.event
    argv, preexec = launch_command(channel.command, user)
    body = json.dumps(message.document, sort_keys=True, default=str).encode()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=user.home if user is not None and os.path.isdir(user.home) else "/",
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - only without setpriv (see launch)
            close_fds=True,
        )
    except OSError as exc:
        raise SendError(f"cannot start {channel.command[0]}: {exc.strerror or exc}") from None
    try:
        out, _ = proc.communicate(body, timeout=channel.timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise SendError(
            f"{channel.command[0]} did not finish within {channel.timeout_seconds:g}s"
        ) from None
    _kill_group(proc)  # what it left behind in its group
    if proc.returncode != 0:
        tail = " ".join(out.decode(errors="replace").split())[-200:]
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit code {proc.returncode}"
        )
        raise SendError(f"{channel.command[0]} failed ({how}) {tail}".rstrip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()
