"""The memory API: ``/v1/memory/facts`` (GET lists, POST injects), ``/v1/memory/sleep``,
``/v1/memory/edits/{edit_id}/revert`` and ``/release``, ``/v1/memory/status`` and
``/v1/memory/replay?until=``.

Writes (POST) need the API key when one is set and run on the writer one at a time; every
read answers from the serving snapshot, so it never waits for a running sleep. ``replay``
rebuilds the weights' hash at the point off to the side; with ``verify=true`` it re-runs the
audit there on the writer's model, so it queues behind writes like one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from memlog.core.facts import Fact
from memlog.engine.status import status_of
from memlog.replay.replay import fact_rows
from memlog.serve.deps import ServerState, require_write_token
from memlog.serve.schemas import FactsIn, SleepIn

router = APIRouter(prefix="/v1/memory")


def _state(request: Request) -> ServerState:
    return request.app.state.memlog


@router.get("/facts")
def list_facts(request: Request, include_pruned: bool = False) -> dict:
    ledger = _state(request).snapshot.ledger
    rows = [r for r in fact_rows(ledger) if include_pruned or r["active"]]
    return {"object": "list", "seq": ledger.head_seq, "data": rows}


@router.post("/facts", dependencies=[Depends(require_write_token)])
def inject_facts(body: FactsIn, request: Request) -> dict:
    facts = [Fact(f.subject, f.relation, f.object) for f in body.facts]  # every fact checked before any is written
    return _state(request).writer.inject(facts)


@router.post("/sleep", dependencies=[Depends(require_write_token)])
def sleep(request: Request, body: SleepIn | None = None) -> dict:
    body = body or SleepIn()
    cycles = body.cycles if body.cycles is not None or body.until_converged else 1
    return _state(request).writer.sleep(cycles, body.until_converged)


@router.post("/edits/{edit_id}/revert", dependencies=[Depends(require_write_token)])
def revert_edit(edit_id: str, request: Request) -> dict:
    return _state(request).writer.revert(edit_id)


@router.post("/edits/{edit_id}/release", dependencies=[Depends(require_write_token)])
def release_edit(edit_id: str, request: Request) -> dict:
    return _state(request).writer.release(edit_id)


@router.get("/status")
def status(request: Request) -> dict:
    state = _state(request)
    snapshot, writer = state.snapshot, state.writer
    auto = state.autosleep
    return {
        **status_of(writer.mem.header, snapshot.ledger, writer.mem.store.path),
        "serving_seq": snapshot.seq,
        "sleeping": writer.sleeping,
        "auto_sleep": None if auto is None else {"pressure_above": auto.pressure, "idle_s": auto.idle_s, "sleeps": auto.slept},
    }


@router.get("/replay")
def replay(request: Request, until: str = Query(..., description="cycle=N, seq=N, time=ISO or head"), verify: bool = False) -> dict:
    state = _state(request)
    if verify:
        return state.writer.replay_verified(until)
    return state.snapshot.replay(until)
