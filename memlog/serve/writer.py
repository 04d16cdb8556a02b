"""The server's writer: the one ``Memory`` that holds the store's writer lock, used one call at a time.

The server opens the store writable when it starts and keeps the writer lock until it stops,
exactly like a long-running CLI command: a second writer (``memlog inject`` in a shell)
gets the usual "locked by PID" error while the server runs; CLI readers are unaffected.
Inside the server, writes (inject, sleep, revert, release, a verifying replay) take ``lock`` in turn; a write
that cannot get it within ``wait_s`` (a long sleep is running) is refused as busy. After
each write the serving snapshot is synced, so the next read sees it.

Automatic sleep (``AutoSleep``): a thread that, when there is something to sleep on (a fact
was injected after the last sleep ended), starts a sleep until converged if the pressure
exceeds ``--sleep-when pressure>X`` (logged as ``SleepTriggered`` first, as the engine's own
automatic sleep does) or if no request arrived for ``--sleep-idle``.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from contextlib import contextmanager

from memlog.core.facts import Fact
from memlog.errors import UserError
from memlog.store.events import FactInjected, SleepEnded, SleepTriggered

_PRESSURE = re.compile(r"^\s*pressure\s*>\s*([0-9]*\.?[0-9]+)\s*$")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class BusyError(UserError):
    """The writer is busy (a sleep is running) and stayed so for the wait allowed."""


def parse_sleep_when(text: str) -> float:
    match = _PRESSURE.match(text)
    if not match:
        raise UserError(f"bad --sleep-when {text!r}; use pressure>X with X between 0 and 1, e.g. pressure>0.2")
    value = float(match.group(1))
    if not 0 <= value < 1:
        raise UserError(f"--sleep-when threshold {value} must be in [0, 1)")
    return value


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"bad --sleep-idle {text!r}; use a positive duration such as 90s, 10m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


class MemoryWriter:
    def __init__(self, mem, snapshot, wait_s: float = 300.0):
        self.mem = mem
        self.snapshot = snapshot
        self.wait_s = wait_s
        self.lock = threading.Lock()
        self.sleeping = False
        self.last_activity = time.monotonic()

    @contextmanager
    def turn(self, wait: bool = True):
        if not self.lock.acquire(timeout=self.wait_s if wait else 0):
            raise BusyError("the memory is busy (a sleep is running); retry later")
        try:
            yield
        finally:
            self.lock.release()
            self.snapshot.sync()

    def inject(self, facts: list[Fact]) -> dict:
        with self.turn():
            report = self.mem.inject(facts)
        return {
            "facts": [vars(f) for f in report.facts],
            "seq": report.seq,
            "recall": report.recall,
            "degraded": report.degraded,
        }

    def sleep(self, cycles: int | None, until_converged: bool, wait: bool = True, trigger: SleepTriggered | None = None) -> dict:
        with self.turn(wait):
            self.sleeping = True
            try:
                if trigger is not None:
                    with self.mem.unit():
                        self.mem.emit(trigger)
                return self.mem.sleep(cycles=cycles, until_converged=until_converged).to_dict()
            finally:
                self.sleeping = False

    def revert(self, edit_id: str) -> dict:
        """``memlog revert``: take the edit's current version out of the weights."""
        with self.turn():
            return {"edit_id": edit_id, "action": "reverted", "seq": self.mem.revert(edit_id)}

    def release(self, edit_id: str) -> dict:
        """``memlog release``: stop looking after the edit's fact and leave the edit in the weights."""
        with self.turn():
            return {"edit_id": edit_id, "action": "released", "seq": self.mem.release(edit_id)}

    def replay_verified(self, until: str) -> dict:
        with self.turn():
            return self.mem.replay(until, verify=True)

    def has_work(self) -> bool:
        """Whether a fact was injected after the last sleep ended (committed events only)."""
        logged = self.snapshot.committed()
        last_injected = max((i.seq for i in logged if isinstance(i.event, FactInjected)), default=0)
        last_slept = max((i.seq for i in logged if isinstance(i.event, SleepEnded)), default=0)
        return last_injected > last_slept


class AutoSleep:
    """Starts sleeps on pressure or idleness (see the module docstring); ``poll_s`` between checks."""

    def __init__(self, writer: MemoryWriter, pressure: float | None, idle_s: float | None, poll_s: float = 1.0):
        self.writer, self.pressure, self.idle_s = writer, pressure, idle_s
        self.slept = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(poll_s,), name="memlog-autosleep", daemon=True)
        if pressure is not None or idle_s is not None:
            self._thread.start()

    def due(self) -> SleepTriggered | str | None:
        w = self.writer
        if w.sleeping or not w.has_work():
            return None
        pressure = w.snapshot.ledger.pressure()
        if self.pressure is not None and pressure > self.pressure:
            return SleepTriggered(pressure=pressure, threshold=self.pressure)
        if self.idle_s is not None and time.monotonic() - w.last_activity > self.idle_s:
            return "idle"
        return None

    def _run(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            reason = self.due()
            if reason is None:
                continue
            try:
                trigger = reason if isinstance(reason, SleepTriggered) else None
                self.writer.sleep(None, until_converged=True, wait=False, trigger=trigger)
                self.slept += 1
            except BusyError:
                continue
            except Exception as exc:  # keep serving; the failed sleep left its events (or none) in the log
                print(f"memlog serve: automatic sleep failed: {exc}", file=sys.stderr)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
