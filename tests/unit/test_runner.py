"""The agent loop with fakes: a fake clock, a fake attest step and a fake delivery."""

from __future__ import annotations

import logging
import random
import sqlite3

import pytest
from gpucensus.agent.runner import Runner
from gpucensus.agent.spool import DELIVERED, Spool, SpoolEntry
from gpucensus.agent.uplink import Backoff, DrainResult, RetryableError
from gpucensus.common.errors import ConfigError, DriverError

KEY = "cd" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class FakeAttest:
    def __init__(self, fail_on: set[int] = frozenset(), size: int = 100) -> None:
        self.sequence = 0
        self.fail_on, self.size = fail_on, size
        self.calls = 0

    def __call__(self) -> SpoolEntry:
        self.calls += 1
        if self.calls in self.fail_on:
            raise DriverError("NVML went away")
        self.sequence += 1
        return SpoolEntry(KEY, self.sequence, b"x" * self.size + str(self.sequence).encode())


class FakeCollector:
    """Delivers everything pending, except while `down` is positive (UNAVAILABLE, counted down per call)."""

    def __init__(self, spool: Spool, down: int = 0) -> None:
        self.spool, self.down = spool, down
        self.calls: list[float] = []
        self.received: list[int] = []

    def deliver(self, clock: FakeClock) -> DrainResult:
        self.calls.append(clock.now)
        if self.down > 0:
            self.down -= 1
            raise RetryableError("UNAVAILABLE: connection refused")
        result = DrainResult()
        for entry in self.spool.pending():
            self.received.append(entry.sequence)
            self.spool.mark_delivered(entry.keyid, entry.sequence, len(self.received))
            result.delivered += 1
        return result


def failing_first(real, errors):
    """`real`, except that its first calls raise `errors`, one each (a disk full, a locked database ...)."""
    pending = iter(errors)

    def call(*args):
        for err in pending:
            raise err
        return real(*args)

    return call


def make_runner(tmp_path, clock, attest, collector=None, max_bytes=100_000, jitter=0.0):
    spool = Spool(tmp_path / "spool.db", max_bytes=max_bytes)
    collector = collector or FakeCollector(spool)
    collector.spool = spool
    runner = Runner(
        spool=spool,
        attest=attest,
        deliver=lambda: collector.deliver(clock),
        interval_seconds=60.0,
        jitter_fraction=jitter,
        backoff=Backoff(1.0, 8.0, random.Random(1)),
        clock=clock,
        wait=clock.wait,
        rng=random.Random(2),
    )
    return runner, spool, collector


def test_each_round_signs_spools_and_delivers_in_order(tmp_path):
    clock = FakeClock()
    runner, spool, collector = make_runner(tmp_path, clock, FakeAttest())
    runner.run(max_rounds=3)
    assert collector.received == [1, 2, 3]
    assert [row.sequence for row in spool.entries(DELIVERED)] == [1, 2, 3]
    assert clock.waits == [60.0, 60.0]  # no busy loop, no wait after the last round


def test_interval_is_jittered_within_bounds(tmp_path):
    clock = FakeClock()
    runner, _, _ = make_runner(tmp_path, clock, FakeAttest(), jitter=0.25)
    intervals = [runner.next_interval() for _ in range(200)]
    assert all(45.0 <= i <= 75.0 for i in intervals)
    assert len(set(intervals)) > 100


def test_collector_down_backs_off_exponentially_and_resends_in_order(tmp_path):
    clock = FakeClock()
    collector = FakeCollector(None, down=4)
    runner, _, collector = make_runner(tmp_path, clock, FakeAttest(), collector=collector)
    runner.run(max_rounds=1)
    delays = [b - a for a, b in zip(collector.calls, collector.calls[1:], strict=False)]
    assert len(delays) == 4
    # jittered in [d/2, d] with d = 1, 2, 4, 8 (capped at retry max 8)
    for delay, ceiling in zip(delays, [1, 2, 4, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert collector.received == [1]
    assert runner.backoff.failures == 0  # reset after the success


def test_a_failed_round_is_logged_and_the_loop_goes_on(tmp_path, caplog):
    clock = FakeClock()
    runner, _, collector = make_runner(tmp_path, clock, FakeAttest(fail_on={2}))
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.runner"):
        runner.run(max_rounds=3)
    assert "NVML went away" in caplog.text
    assert collector.received == [1, 2]  # round 2 signed nothing, so no gap in the chain
    assert runner.rounds == 3 and runner.created == 2


def test_full_spool_stops_new_envelopes_until_delivery_makes_room(tmp_path, caplog):
    clock = FakeClock()
    collector = FakeCollector(None, down=10**6)  # the collector never comes back
    attest = FakeAttest(size=100)
    runner, spool, _ = make_runner(tmp_path, clock, attest, collector=collector, max_bytes=250)
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.spool"):
        for _ in range(5):
            runner.round()
    assert attest.calls == 3  # 3 x ~100 bytes reached the 250-byte limit; rounds 4 and 5 signed nothing
    assert [e.sequence for e in spool.pending()] == [1, 2, 3]
    assert caplog.text.count("is full") == 2
    collector.down = 0
    collector.deliver(clock)
    runner.round()
    assert attest.calls == 4 and [e.sequence for e in spool.pending()] == [4]


def test_spool_write_failure_keeps_the_envelope_in_memory_and_retries(tmp_path):
    clock = FakeClock()
    runner, spool, _ = make_runner(tmp_path, clock, FakeAttest())
    spool.append = failing_first(spool.append, [OSError("disk full")])
    runner.round()
    assert spool.pending() == [] and runner._held is not None
    runner.round()  # first spools the held envelope, then signs the next
    assert [e.sequence for e in spool.pending()] == [1, 2]


def test_stop_flushes_with_a_last_delivery(tmp_path):
    clock = FakeClock()
    collector = FakeCollector(None, down=1)
    runner, spool, collector = make_runner(tmp_path, clock, FakeAttest(), collector=collector)

    def wait_then_stop(seconds):
        clock.wait(seconds)
        runner.stop()

    runner._wait = wait_then_stop
    runner.run()
    assert collector.received == [1]  # delivered by the flush after stop()
    assert spool.pending() == []


def test_refused_enrollment_ends_the_loop(tmp_path):
    clock = FakeClock()
    runner, spool, _ = make_runner(tmp_path, clock, FakeAttest())

    def refuse():
        raise ConfigError("the collector refused enrollment")

    runner.deliver = refuse
    with pytest.raises(ConfigError):
        runner.run()
    assert [e.sequence for e in spool.pending()] == [1]  # what was signed stays spooled


def test_a_transient_spool_error_in_the_loop_is_retried_not_fatal(tmp_path, caplog):
    # e.g. an operator's sqlite3 shell holding the spool's write lock longer than the busy timeout
    clock = FakeClock()
    runner, spool, collector = make_runner(tmp_path, clock, FakeAttest())
    spool.counts = failing_first(spool.counts, [sqlite3.OperationalError("database is locked")])
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.runner"):
        runner.run(max_rounds=2)
    assert "database is locked" in caplog.text
    assert collector.received == [1, 2]


def test_an_envelope_held_in_memory_is_spooled_before_a_fatal_error_ends_the_loop(tmp_path):
    clock = FakeClock()
    attest = FakeAttest()
    runner, spool, _ = make_runner(tmp_path, clock, attest)
    spool.append(KEY, 0, b"from an earlier run")  # something pending, so the loop tries to deliver
    spool.append = failing_first(spool.append, [OSError("disk full")])

    def refuse():
        raise ConfigError("the collector refused enrollment")

    runner.deliver = refuse
    with pytest.raises(ConfigError):
        runner.run()
    assert [e.sequence for e in spool.pending()] == [0, 1]  # sequence 1 was signed: it must not vanish


def test_a_full_disk_signs_nothing_new_and_retries_the_held_envelope_each_interval(tmp_path, caplog):
    clock = FakeClock()
    attest = FakeAttest()
    runner, spool, collector = make_runner(tmp_path, clock, attest)
    spool.append = failing_first(spool.append, [sqlite3.OperationalError("database or disk is full")] * 3)
    with caplog.at_level(logging.ERROR, logger="gpucensus.agent.runner"):
        runner.run(max_rounds=2)
    assert attest.calls == 2  # nothing signed while sequence 1 could not be spooled
    assert collector.received == [1, 2]
    assert caplog.text.count("cannot write sequence 1") == 3  # once per retry, not twice
    assert clock.waits == [60.0] * 3  # retried at the interval: no busy loop


def test_rounds_that_spool_nothing_are_counted_with_their_cause(tmp_path):
    clock = FakeClock()
    runner, _, _ = make_runner(tmp_path, clock, FakeAttest(fail_on={2}))
    runner.run(max_rounds=3)
    assert (runner.rounds, runner.created, runner.unsigned_rounds) == (3, 2, 1)
    assert isinstance(runner.last_failure, DriverError)
    full, _, _ = make_runner(tmp_path / "full", clock, FakeAttest(), max_bytes=1)
    full.spool.append(KEY, 99, b"x" * 10)  # undelivered bytes over the limit: no room for a new envelope
    full.spool.mark_rejected(KEY, 99, "refused")
    full.run(max_rounds=1)
    assert full.unsigned_rounds == 1 and "is full" in str(full.last_failure)
