"""The reach a constrained solve has left at a new key (memlog.core.room, memlog.engine.room),
as the solve reports it and as sleep logs it, and the "first" held positions."""

from __future__ import annotations

import statistics

import pytest

from memlog.core.keys import KeyReader, bare_prompt_batch
from memlog.core.memit import Protection, memit_edit
from memlog.core.pool import mixed_pool
from memlog.core.solve import room_at
from memlog.engine.room import budget_excess, budget_victims, room_now
from memlog.errors import UserError
from memlog.projections.readmodels import mean_reach
from memlog.store.events import ConstraintRoom
from tests.test_wake_constrained import CHEAP, _memory, _three_edited_and_a_fourth, residuals


def test_first_positions_hold_the_subject_and_the_object_s_first_prediction(embedded_tokenizer):
    """``positions="first"``: two keys per fact, the subject's last token and the prompt's last;
    a protected edit leaves both put, and leaves the later object positions free."""
    lm, covs, old, new = _three_edited_and_a_fourth(embedded_tokenizer)
    batch, rows, cols = bare_prompt_batch(lm, old, "first")
    prompt_ids = [bare_prompt_batch(lm, [f], "subject")[0].input_ids.shape[1] for f in old]  # up to the subject
    assert [int((rows == i).sum()) for i in range(len(old))] == [2, 2, 2]
    assert cols.tolist() == [c for i, f in enumerate(old) for c in (prompt_ids[i] - 1, len(lm.tokenizer(f.prompt, add_special_tokens=True)["input_ids"]) - 1)]
    held = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "first"))
    assert max(residuals(lm, held.deltas, old, "first")) <= 1e-4
    assert max(residuals(lm, held.deltas, old, "object")) > 1e-2  # the object's own positions were not held
    assert held.constraint_rank[1] == 6


def test_a_protected_edit_reports_the_reach_of_its_keys(embedded_tokenizer):
    """``EditResult.constraint_reach``: per layer, the median over the edit's keys of q/(1+q), the
    same number ``room_at`` gives for the key under the keys the edit held (read on the weights
    the edit saw at that layer: its first layer's)."""
    lm, covs, old, new = _three_edited_and_a_fourth(embedded_tokenizer)
    result = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "object"))
    assert sorted(result.constraint_reach) == [1, 2] and all(0.0 < r < 1.0 for r in result.constraint_reach.values())
    first = CHEAP.layers[0]
    batch, rows, cols = bare_prompt_batch(lm, old, "object")
    held = KeyReader(lm, batch.input_ids, rows, cols).read(first)
    own = result.deltas[first].keys
    _, q = room_at(own, covs[first], CHEAP.solve_lam, held)
    assert result.constraint_reach[first] == pytest.approx(statistics.median((q / (1 + q)).tolist()), rel=1e-5)
    plain = memit_edit(lm, [new], CHEAP, covs)
    assert plain.constraint_reach == {}


def test_key_room_reach_grows_as_facts_leave_and_matches_room_at(tmp_path, embedded_tokenizer):
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=128, wake="constrained", protect_positions="object")
    try:
        facts = mixed_pool(12)
        mem.inject(facts, audit=False)
        room = room_now(mem)
        keys = room.keys
        assert room.protected == 12 and keys.probe_facts == tuple(range(6, 12)) and sum(keys.counts) == keys.held[1].shape[1]
        assert room.rank_left == {layer: 128 - keys.held[layer].shape[1] for layer in (1, 2)}
        layer = 2
        older = keys.held[layer][:, : sum(keys.counts[:6])]  # the six older facts' keys: everything but the probes'
        _, q = room_at(keys.probes[layer], mem.editor.covariances[layer], mem.editor.config.lam, older)
        assert room.reach[layer] == pytest.approx(statistics.median((q / (1 + q)).tolist()), rel=1e-9)
        reaches = [mean_reach(keys.reach(without=set(range(k)))) for k in range(7)]
        assert all(a <= b + 1e-12 for a, b in zip(reaches, reaches[1:])) and reaches[0] < reaches[-1]
        _, q0 = room_at(keys.probes[layer], mem.editor.covariances[layer], mem.editor.config.lam)
        assert keys.reach(without=set(range(6)))[layer] == pytest.approx(statistics.median((q0 / (1 + q0)).tolist()), rel=1e-9)
    finally:
        mem.close()


def test_sleep_logs_the_reach_it_measures_and_status_shows_it(tmp_path, embedded_tokenizer, monkeypatch):
    """Sleep logs, per edit layer, the newest facts' median reach against the other facts' keys;
    constrained wake edits log their own keys' reach. Refreshes are made to fail so that the
    weights sleep measures are the ones measured here before it."""
    import memlog.engine.sleep as sleep_module

    mem = _memory(tmp_path, embedded_tokenizer, intermediate=128, wake="constrained", protect_positions="object", refresh_strategy="correct")
    try:
        mem.inject(mixed_pool(12), audit=False)
        wake_rooms = [e for e in mem.events() if isinstance(e, ConstraintRoom)]
        assert all(r.reach is not None and len(r.reach) == 2 and all(0 < x < 1 for x in r.reach) for r in wake_rooms[1:])  # the first inject held nothing
        room = room_now(mem)

        def no_room(*_a, **_k):
            raise UserError("no refresh in this test")

        monkeypatch.setattr(sleep_module, "solve_refresh", no_room)
        mem.sleep(cycles=1)
        logged = [e for e in mem.events() if isinstance(e, ConstraintRoom) and e.phase == "sleep"][-1]
        assert logged.reach == pytest.approx([room.reach[layer] for layer in (1, 2)], rel=1e-9)
        assert logged.rank_left == [room.rank_left[layer] for layer in (1, 2)]
        status = mem.status()["room"]
        assert status["reach"] == logged.reach and status["mean_reach"] == pytest.approx(sum(logged.reach) / 2)
    finally:
        mem.close()


def test_sleep_measures_the_room_at_the_positions_it_protects(tmp_path, embedded_tokenizer):
    """A sleep that overrides the protected positions measures the room at those, not the store's."""
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=128, wake="constrained", protect_positions="object")
    try:
        mem.inject(mixed_pool(5), audit=False)
        mem.sleep(cycles=1, protect_positions="subject")
        room = [e for e in mem.events() if isinstance(e, ConstraintRoom) and e.phase == "sleep"][-1]
        assert room.rank_left == [128 - 5, 128 - 5]  # one key a fact; the object positions hold about 3
    finally:
        mem.close()


def test_the_budget_takes_out_the_fewest_facts_whose_keys_free_the_reserve(tmp_path, embedded_tokenizer):
    """``budget_victims``: on a key space of 24 dimensions (reserve 2) with 10 facts held at their
    object positions (more keys than dimensions), it returns the smallest n such that the keys of
    every fact but the policy's first n leave the reserve free, and n - 1 would not. ``KeyRoom.
    rank_left(without=…)`` is d_in less the rank of exactly the kept facts' columns."""
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=24, wake="unconstrained", protect_positions="object")
    try:
        mem.inject(mixed_pool(10), audit=False)
        room = room_now(mem)
        keys = room.keys
        assert keys.held[1].shape[1] > 24 and min(room.rank_left.values()) == 0
        order = sorted(mem.ledger.active_facts(), key=lambda s: s.injected_seq)[::-1]  # newest first
        n = budget_victims(mem, room, order)
        ids = list(range(10))[::-1]
        left = keys.rank_left(without=frozenset(ids[:n]))
        assert all(free >= 2 for free in left.values())
        assert any(free < 2 for free in keys.rank_left(without=frozenset(ids[: n - 1])).values())
        kept = keys.columns(frozenset(ids[:n]), keep_probes=True)
        assert int(kept.numel()) == sum(keys.counts[i] for i in range(10) if i not in ids[:n])
        assert budget_excess(mem, room) == 2 and n <= 10  # two dimensions short
    finally:
        mem.close()
