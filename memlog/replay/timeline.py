"""Time travel as a read: the ledger and the weights as they were at a seq of the log.

``point_seq`` resolves a point (``"cycle=3"``, ``"seq=120"``, ``"time=…"``, a ``Point`` or
``None`` for the head) to a seq; ``ledger_at`` folds the committed log up to that seq;
``weights_at`` projects that ledger's applied edits onto the model for the duration of a
``with`` block and then calls ``restore`` (the caller's head projection). ``Memory.point_seq``,
``ledger_at``, ``weights_at`` and ``recall(at=…)`` are these functions over its own log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from memlog.projections.ledger import Ledger
from memlog.replay.points import Point, parse_point, resolve_point


def point_seq(logged: Sequence, at: str | Point | None, head_seq: int) -> int:
    """The seq ``at`` names in ``logged`` (ordered by seq); ``None`` is ``head_seq``."""
    if at is None:
        return head_seq
    point = parse_point(at) if isinstance(at, str) else at
    return resolve_point(point, logged)


def ledger_at(logged: Sequence, seq: int) -> Ledger:
    """The ledger folded from the events of ``logged`` up to and including ``seq``."""
    return Ledger.fold([(item.seq, item.event) for item in logged if item.seq <= seq])


@contextmanager
def weights_at(projector, logged: Sequence, seq: int, restore: Callable[[], object]) -> Iterator[tuple[int, Ledger, str]]:
    """Project the weights of ``seq`` for the block; yields (seq, ledger there, weights sha256)."""
    ledger = ledger_at(logged, seq)
    try:
        sha = projector.project(ledger.applied_entries())
        yield seq, ledger, sha
    finally:
        restore()
