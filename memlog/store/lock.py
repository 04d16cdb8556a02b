"""The single-writer lock of a store: an exclusive ``flock`` on ``<store>/LOCK``.

Only one process may write to a store at a time. The writer takes a non-blocking,
exclusive ``fcntl.flock`` on ``<store>/LOCK`` and writes its PID into the file so that a
second writer can say who holds it. Readers never take the lock.

The kernel drops a ``flock`` when its holder dies (even on ``kill -9``), so a crashed
writer never leaves a stale lock; a leftover PID in the file means nothing by itself.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from memlog.errors import StoreLockedError

LOCK_NAME = "LOCK"


def _read_pid(fd: int) -> str:
    """The PID written by the holder; it may not be written yet right after it locked."""
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.005)
    return "unknown"


class WriterLock:
    """Exclusive, non-blocking writer lock on ``<store_dir>/LOCK``.

    Use as a context manager or call ``acquire()``/``release()``. A second ``acquire`` by
    another holder (another process, or another WriterLock in this one) raises
    ``StoreLockedError`` naming the holder's PID.
    """

    def __init__(self, store_dir: Path | str):
        self.store_dir = Path(store_dir)
        self.path = self.store_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "WriterLock":
        if self._fd is not None:
            raise RuntimeError(f"writer lock on {self.store_dir} is already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(
                f"store {self.store_dir} is locked by PID {pid} (another memlog process is writing); "
                "wait for it to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __del__(self) -> None:
        # Closing the descriptor releases the flock; do it if the owner forgot.
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
