"""A new store holding a prefix of another store's log: ``memlog fork DEST --until POINT``.

The fork is the source as it was at ``until_seq``: events 1..until_seq copied row for row
(same seqs, commit times and payloads, hence the same hash-chain links up to there), every
delta those events reference (read with its sha256 checked, written again, so the copy is
verified), and a head file at ``until_seq``. The header gains ``forked_from`` (the source's
path, the seq and its chain link). The source is only read.

The copy is built in a hidden sibling directory, verified like ``memlog verify`` does for the
log and its blobs (``verify_store``), and renamed into place (``memlog.store.outdir``): a crash or a refusal leaves no
partial store under ``dest``. A point inside a committed unit (the events one command wrote
together, which share their commit time: a sleep cycle's revert and refresh, a batch of
injections) is refused, because the fork would hold half of that unit.

Use: try another sleep strategy from a past state, keep an experiment's store apart from the
original, or rewind a store (fork it before the event to undo, then use the fork).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from memlog.errors import IntegrityError, UserError
from memlog.store.blobs import BlobStore
from memlog.store.chain import write_head
from memlog.store.events import blob_refs
from memlog.store.log import EventLog
from memlog.store.outdir import check_out, written_atomically
from memlog.store.store import BLOBS_NAME, LOG_NAME, Store, verify_store


def unit_bounds(logged: list, seq: int) -> tuple[int, int]:
    """The first and last seq of the committed unit holding ``seq`` (events that share its
    commit time, adjacent in the log)."""
    at = next(i for i, item in enumerate(logged) if item.seq == seq)
    i = j = at
    while i > 0 and logged[i - 1].ts == logged[at].ts:
        i -= 1
    while j + 1 < len(logged) and logged[j + 1].ts == logged[at].ts:
        j += 1
    return logged[i].seq, logged[j].seq


def fork_store(source: Path, dest: Path, until: int | Callable[[list], int]) -> dict:
    """Write the fork of ``source`` at ``until`` (a seq, or a function of the source's logged
    events that picks one, e.g. a ``cycle=N`` point) to ``dest`` (new, or an empty directory
    outside the source); a summary dict. UserError for a bad point or destination, and nothing
    is written then."""
    source, dest = Path(source), Path(dest)
    check_out(dest, source, "DEST")
    with Store.open(source, writable=False) as src:
        logged = src.log.read()
        until_seq = until(logged) if callable(until) else int(until)
        head = logged[-1].seq if logged else 0
        if not 1 <= until_seq <= head:
            raise UserError(f"cannot fork at seq {until_seq}: {source} holds seqs 1..{head}")
        first, last = unit_bounds(logged, until_seq)
        if last != until_seq:
            raise UserError(
                f"seq {until_seq} is inside a unit written together (seqs {first}..{last}); "
                f"fork at seq={first - 1} or seq={last}"
            )
        with written_atomically(dest, source, "DEST") as tmp:
            copied = _copy_blobs(src.blobs, BlobStore(tmp / BLOBS_NAME), [item.event for item in logged if item.seq <= until_seq])
            link = src.log.chain_link(until_seq)
            note = {"forked_from": {"store": str(source.resolve()), "seq": until_seq, "chain_hash": link}}
            tip = EventLog.create_prefix(tmp / LOG_NAME, src.log, until_seq, note).chain_head()
            if link is not None and tip.hash != link:
                raise IntegrityError(f"the fork's chain link at seq {until_seq} differs from the source's; nothing was written")
            write_head(tmp, tip)
            with Store.open(tmp, writable=False) as check:
                problems = verify_store(check)
            if problems:
                raise IntegrityError("the fork did not verify: " + "; ".join(problems[:3]))
    return {"store": str(dest), "source": str(source), "seq": until_seq, "blobs": copied, "chain_hash": tip.hash}


def _copy_blobs(source: BlobStore, dest: BlobStore, events: list) -> int:
    """Copy every blob ``events`` reference (each read with its sha256 verified); the count."""
    done: set[str] = set()
    for event in events:
        for ref in blob_refs(event):
            if ref.sha256 in done:
                continue
            written = dest.put(source.get(ref))
            if written.sha256 != ref.sha256:
                raise IntegrityError(f"blob {ref.sha256[:12]} changed on copy (now {written.sha256[:12]})")
            done.add(ref.sha256)
    return len(done)
