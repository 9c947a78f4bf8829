"""Dashboard rendering helpers that build HTML in Python."""

from __future__ import annotations

from datetime import UTC, datetime

from schedd.services.dashboard import Outcome
from schedd.ui.render import strip

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def test_the_outcome_strip_links_every_run_oldest_first() -> None:
    html = strip([Outcome(7, "failed", NOW), Outcome(9, "completed", NOW)])
    assert html.index("/ui/runs/7") < html.index("/ui/runs/9")
    assert 'class="cell s-failed"' in html and 'aria-label="last 2 outcomes' in html


def test_the_outcome_strip_escapes_what_it_did_not_make() -> None:
    html = strip([Outcome(1, '"><script>x</script>', NOW)])
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_an_empty_strip_says_so() -> None:
    assert "no runs yet" in strip([])
