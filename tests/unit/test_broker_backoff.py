"""The brokers' reconnection backoff: pauses, jitter, reset, and the log lines of an outage."""

from __future__ import annotations

import logging
import threading

import pytest

from schedd.brokers.backoff import FIRST, LONGEST, Reconnect

LOGGER = "schedd.brokers.test"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reconnect(clock: Clock, jitter: float = 1.0) -> Reconnect:
    # jitter() is a draw in [0, 1): the pause is nominal * (0.5 + 0.5 * draw).
    return Reconnect("Thing", logging.getLogger(LOGGER), clock=clock, jitter=lambda: jitter)


def test_no_outage_means_no_wait() -> None:
    state = reconnect(Clock())
    assert state.wait_time() == 0.0
    assert not state.down


def test_pauses_double_from_first_to_longest() -> None:
    clock = Clock()
    state = reconnect(clock)
    pauses = [state.failed("refused") for _ in range(9)]
    assert pauses[:5] == pytest.approx([FIRST * 2**n for n in range(5)])
    assert max(pauses) == LONGEST
    assert pauses[-3:] == [LONGEST] * 3
    assert state.wait_time() == pytest.approx(LONGEST)
    clock.now += 2.0
    assert state.wait_time() == pytest.approx(LONGEST - 2.0)
    clock.now += LONGEST
    assert state.wait_time() == 0.0


def test_jitter_keeps_a_pause_between_half_and_all_of_it() -> None:
    low = reconnect(Clock(), jitter=0.0)
    high = reconnect(Clock(), jitter=0.999)
    for n in range(12):
        nominal = min(LONGEST, FIRST * 2**n)
        assert low.failed("x") == pytest.approx(nominal / 2)
        assert high.failed("x") == pytest.approx(nominal * 0.9995)


def test_a_thousand_failures_do_not_overflow() -> None:
    state = reconnect(Clock())
    for _ in range(1000):
        pause = state.failed("refused")
    assert pause == LONGEST


def test_an_outage_logs_one_warning_then_debug_then_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    state = reconnect(clock)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    state.succeeded()  # no outage: nothing to say
    for _ in range(20):
        state.failed("Connection refused")
    clock.now += 12.5
    state.succeeded()
    state.succeeded()
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING"] + ["DEBUG"] * 19 + ["INFO"]
    assert caplog.records[0].getMessage() == (
        "Thing unreachable, retrying with backoff: Connection refused"
    )
    assert caplog.records[-1].getMessage() == (
        "Thing reachable again after 20 failed attempts over 12.5 s"
    )


def test_success_resets_the_backoff_and_the_next_outage_warns_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    state = reconnect(clock)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(6):
        state.failed("refused")
    state.succeeded()
    assert state.wait_time() == 0.0 and not state.down
    assert state.failed("refused again") == pytest.approx(FIRST)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Thing unreachable, retrying with backoff: refused",
        "Thing unreachable, retrying with backoff: refused again",
    ]
    assert "after 6 failed attempts" in caplog.records[-2].getMessage()


def test_a_connection_lost_and_reopened_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = reconnect(Clock())
    caplog.set_level(logging.INFO, logger=LOGGER)
    state.lost("forced")
    assert state.wait_time() == 0.0  # a loss is not a failed attempt: reopen now
    state.succeeded()
    state.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "Thing connection lost and reopened: forced"
    ]


def test_a_connection_lost_then_unreachable_is_the_outage_lines_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = reconnect(Clock())
    caplog.set_level(logging.INFO, logger=LOGGER)
    state.lost("forced")
    state.failed("refused")
    state.failed("refused")
    state.succeeded()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "reachable again after 2 failed attempts" in caplog.records[1].getMessage()


def test_threads_of_one_instance_share_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    state = reconnect(Clock())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    threads = [
        threading.Thread(target=lambda: [state.failed("refused") for _ in range(50)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state.succeeded()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 1
    assert "after 400 failed attempts" in caplog.records[-1].getMessage()
