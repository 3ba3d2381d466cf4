"""The agent's loop: every (jittered) interval, snapshot -> sign -> append to the spool -> drain the spool.

Everything with a side effect is passed in: `attest` (snapshot and sign one envelope), `deliver` (enroll if
needed, then drain the spool to the collector), the clock and the wait. Production passes `time.monotonic`
and an event wait that `stop()` (the SIGTERM handler) interrupts; tests pass a fake clock. A failure in one
round is logged and the loop goes on; only a configuration error (e.g. a refused enrollment token) ends it.
Rounds that spooled nothing new are counted (`unsigned_rounds`, `last_failure`) so `run --rounds N` can fail.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable

from gpucensus.agent.spool import PENDING, Spool, SpoolEntry
from gpucensus.agent.uplink import Backoff, DrainResult, RetryableError
from gpucensus.common.errors import ConfigError, GpucensusError

log = logging.getLogger("gpucensus.agent.runner")


class Runner:
    def __init__(
        self,
        *,
        spool: Spool,
        attest: Callable[[], SpoolEntry],
        deliver: Callable[[], DrainResult],
        interval_seconds: float,
        jitter_fraction: float,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spool, self.attest, self.deliver = spool, attest, deliver
        self.interval_seconds, self.jitter_fraction = interval_seconds, jitter_fraction
        self.backoff, self.clock = backoff, clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._rng = rng or random.Random()
        self._held: SpoolEntry | None = None  # signed but not yet spooled (the spool write failed)
        self._next_round = self._next_drain = 0.0
        self.rounds = 0  # rounds started (including those refused for lack of room)
        self.created = 0  # envelopes signed and spooled
        self.unsigned_rounds = 0  # rounds that spooled nothing new (spool full, attestation failed, write failed)
        self.last_failure: BaseException | None = None  # why the last such round spooled nothing
        self.rejected = 0  # envelopes the collector refused while this runner delivered
        self.last_rejection = ""  # the collector's reason for the last of them

    def stop(self) -> None:
        """Ask the loop to finish: it flushes (one last drain) and returns. Safe from a signal handler."""
        self._stop.set()

    def next_interval(self) -> float:
        j = self.jitter_fraction
        return self.interval_seconds * (1 + self._rng.uniform(-j, j))

    def run(self, max_rounds: int | None = None) -> None:
        """Loop until stop(); with `max_rounds`, also return after that many rounds once the spool drained.

        An unexpected error in one pass (the spool database locked or unreadable for a while) is logged and
        retried after a backoff; only a ConfigError (a refused enrollment) ends the loop early.
        """
        self._next_round = self._next_drain = self.clock()
        while not self._stop.is_set():
            try:
                wake = self._step(max_rounds)
            except ConfigError:
                self._spool_held_before_exit()
                raise
            except Exception as err:
                delay = self.backoff.next_delay()
                log.error("agent loop error: %s; retrying in %.2fs", err, delay, exc_info=not _is_user_error(err))
                wake = self.clock() + delay
            if wake is None:
                break
            self._wait(max(0.0, wake - self.clock()))
        self.flush()

    def _step(self, max_rounds: int | None) -> float | None:
        """One pass of the loop: when due, attest and drain. Returns when to wake next, None when done."""
        now = self.clock()
        if self._held is not None:
            self._spool(self._held)
        rounds_left = max_rounds is None or self.rounds < max_rounds
        if rounds_left and now >= self._next_round:
            self._next_round = now + self.next_interval()
            if self._held is None:  # else the spool cannot even take what is signed: sign nothing new
                self.round()
                if self.backoff.failures == 0:
                    self._next_drain = now
        pending = self._pending()
        if pending and now >= self._next_drain:
            self._next_drain = now + self._drain()
            pending = self._pending()
        rounds_left = max_rounds is None or self.rounds < max_rounds
        if not rounds_left and not pending and self._held is None:
            return None
        wake = min(self._next_round if rounds_left else math.inf, self._next_drain if pending else math.inf)
        return now + self.interval_seconds if wake == math.inf else wake

    def round(self) -> None:
        """One attestation: refuse if the spool is full, else sign and spool it."""
        self.rounds += 1
        if self._held is not None and not self._spool(self._held):
            self._unsigned(GpucensusError("the spool cannot take the envelope signed in an earlier round"))
            return
        if not self.spool.check_room():
            self._unsigned(GpucensusError(f"the spool {self.spool.path} is full", hint="raise spool.max_bytes"))
            return
        try:
            signed = self.attest()
        except Exception as err:  # a bad round is logged; the loop goes on
            log.error("attestation round failed: %s", err, exc_info=not _is_user_error(err))
            self._unsigned(err)
            return
        if not self._spool(signed):
            self._unsigned(GpucensusError(f"sequence {signed.sequence} could not be written to the spool"))

    def _unsigned(self, reason: BaseException) -> None:
        self.unsigned_rounds += 1
        self.last_failure = reason

    def _spool(self, signed: SpoolEntry) -> bool:
        try:
            self.spool.append(signed.keyid, signed.sequence, signed.envelope)
        except Exception as err:
            self._held = signed
            log.error("cannot write sequence %d to the spool (kept in memory, retried): %s", signed.sequence, err)
            return False
        self._held = None
        self.created += 1
        return True

    def _pending(self) -> int:
        return self.spool.counts()[PENDING]

    def _drain(self) -> float:
        """One delivery attempt; returns the delay before the next one (0 when more is pending, no error)."""
        try:
            result = self.deliver()
        except ConfigError:
            raise
        except RetryableError as err:
            delay = self.backoff.next_delay()
            hint = f" (hint: {err.hint})" if err.hint else ""
            log.warning(
                "collector unavailable (%s); %d pending, retrying in %.2fs%s", err, self._pending(), delay, hint
            )
            return delay
        except Exception as err:
            delay = self.backoff.next_delay()
            log.error("delivery failed: %s; retrying in %.2fs", err, delay, exc_info=not _is_user_error(err))
            return delay
        self._count_rejections(result)
        if result.error:
            return self.backoff.next_delay()
        self.backoff.reset()
        if result.delivered or result.rejected:
            log.info(
                "delivered %d (%d already stored), rejected %d, %d pending",
                result.delivered, result.duplicates, result.rejected, self._pending(),
            )  # fmt: skip
        return 0.0

    def flush(self) -> None:
        """Spool anything held in memory and make one last delivery attempt (bounded by the call deadline)."""
        self._spool_held_before_exit()
        try:
            if self._pending():
                self._count_rejections(self.deliver())
        except Exception as err:
            log.warning("final delivery attempt failed (%s); undelivered envelopes stay spooled", err)

    def _count_rejections(self, result: DrainResult) -> None:
        self.rejected += result.rejected
        if result.rejected:
            self.last_rejection = result.last_rejection

    def _spool_held_before_exit(self) -> None:
        if self._held is not None and not self._spool(self._held):
            log.error(
                "sequence %d was signed but could not be written to the spool before exit: it is lost and the "
                "collector will report the gap",
                self._held.sequence,
            )


def _is_user_error(err: BaseException) -> bool:
    return isinstance(err, GpucensusError)
