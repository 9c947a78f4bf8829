"""The one redaction every URL and DSN shown anywhere goes through."""

from __future__ import annotations

import pytest

from schedd.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("sqlite:////var/lib/sched/sched.db", "sqlite:////var/lib/sched/sched.db"),
        ("postgresql://u:p/w@d@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://h/db?password=x&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        (
            "postgresql://h/db?sslmode=require&sslpassword=x",
            "postgresql://h/db?sslmode=require&sslpassword=***",
        ),
        (
            "https://h/p?token=t1&api_key=k&apikey=k2",
            "https://h/p?token=***&api_key=***&apikey=***",
        ),
        (
            "https://h/p?access_token=t&client_secret=s",
            "https://h/p?access_token=***&client_secret=***",
        ),
        ("https://h/p?key=k#frag", "https://h/p?key=***#frag"),
        ("https://h/p?PASSWORD=k", "https://h/p?PASSWORD=***"),
        ("https://h/p?page=2&size=10", "https://h/p?page=2&size=10"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user@cache", "redis://user@cache"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "cannot connect to postgresql://a:b@h/db?password=c: refused",
            "cannot connect to postgresql://a:***@h/db?password=***: refused",
        ),
        ("dsn host=h password=s3 dbname=x", "dsn host=h password=*** dbname=x"),
        ("plain message, no secrets", "plain message, no secrets"),
        ("retry_count=3 status=failed", "retry_count=3 status=failed"),
    ],
)
def test_redact_text(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted
