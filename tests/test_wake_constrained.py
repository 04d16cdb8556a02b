"""Constrained wake on the tiny random Llama: the protected keys stay put at every layer,
same-subject facts are edited jointly instead of blocking the edit, the null-space budget
prunes nothing while room is left (and prunes once it runs out), and old stores read as
unconstrained."""

from __future__ import annotations

import pytest
import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.facts import Fact
from memlog.core.keys import KeyReader, bare_prompt_batch
from memlog.core.memit import MemitConfig, Protection, applied, apply_factors, memit_edit, prepare_covariances
from memlog.core.model import LoadedModel, ModelSpec
from memlog.core.pool import fact_pool, mixed_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.engine.wake import protection_of
from memlog.errors import UserError
from memlog.store.events import ConstraintRoom, EditPruned, FactReleased, RecallAudited
from tests.conftest import make_tiny_llama

CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def _tiny(tokenizer, intermediate: int = 128) -> LoadedModel:
    model = make_tiny_llama(seed=0, intermediate=intermediate)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def _covs(lm, cfg):
    from memlog.core.covariance import compute_covariance

    return prepare_covariances(compute_covariance(lm, cfg.layers, cfg).covs)


def residuals(lm, deltas, facts, positions: str = "subject") -> list[float]:
    """‖ΔW_l k‖ / (‖ΔW_l‖_F ‖k‖) for every protected key at every layer, keys read with the edit applied."""
    batch, rows, cols = bare_prompt_batch(lm, facts, positions)
    reader = KeyReader(lm, batch.input_ids, rows, cols)
    out = []
    with applied(lm, deltas):
        for layer in sorted(deltas):
            k = reader.read(layer).double()
            dw = deltas[layer].u.double() @ deltas[layer].v.double().T
            out += ((dw @ k).norm(dim=0) / (dw.norm() * k.norm(dim=0))).tolist()
    return out


def test_protected_keys_stay_put_at_every_layer(embedded_tokenizer):
    lm = _tiny(embedded_tokenizer)
    covs = _covs(lm, CHEAP)
    old, new = fact_pool(4)[:3], fact_pool(4)[3]
    for fact in old:
        apply_factors(lm, memit_edit(lm, [fact], CHEAP, covs).deltas)
    free = memit_edit(lm, [new], CHEAP, covs)
    held = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old)))
    assert max(residuals(lm, held.deltas, old)) <= 1e-4
    assert max(residuals(lm, free.deltas, old)) > 1e-2  # the unconstrained edit does move them
    assert held.constraint_rank == {1: 3, 2: 3}


def _three_edited_and_a_fourth(embedded_tokenizer):
    """The tiny model with three mixed-pool facts edited in (unconstrained), and a fourth fact."""
    lm = _tiny(embedded_tokenizer)
    covs = _covs(lm, CHEAP)
    old, new = mixed_pool(4)[:3], mixed_pool(4)[3]
    for fact in old:
        apply_factors(lm, memit_edit(lm, [fact], CHEAP, covs).deltas)
    return lm, covs, old, new


def test_object_positions_are_held_too_when_asked(embedded_tokenizer):
    """``positions="object"``: the keys that predict each protected object's tokens and the word
    boundary after it stay put as well (subject protection alone leaves them free)."""
    lm, covs, old, new = _three_edited_and_a_fourth(embedded_tokenizer)
    batch, rows, cols = bare_prompt_batch(lm, old, "object")
    per_fact = [int((rows == i).sum()) for i in range(len(old))]
    answers = [len(lm.tokenizer(" " + f.object, add_special_tokens=False)["input_ids"]) for f in old]
    assert per_fact == [n + 2 for n in answers]  # the subject, the prompt's last token, each object token
    subject_only = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old)))
    held = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "object"))
    assert max(residuals(lm, held.deltas, old, "object")) <= 1e-4
    assert max(residuals(lm, subject_only.deltas, old, "object")) > 1e-2
    assert held.constraint_rank[1] == sum(per_fact) > subject_only.constraint_rank[1] == 3


def test_every_position_of_the_prompt_and_object_is_held_with_all(embedded_tokenizer):
    """``positions="all"``: every token of each protected prompt and of its object stays put (the
    whole sequence greedy decoding reads), where the object positions alone leave the others free."""
    lm, covs, old, new = _three_edited_and_a_fourth(embedded_tokenizer)
    batch, rows, cols = bare_prompt_batch(lm, old, "all")
    per_fact = [int((rows == i).sum()) for i in range(len(old))]
    lengths = [len(lm.tokenizer(f.prompt)["input_ids"]) + len(lm.tokenizer(" " + f.object, add_special_tokens=False)["input_ids"]) for f in old]
    assert per_fact == lengths and int(batch.lengths.sum()) == sum(lengths)
    objects_only = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "object"))
    held = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "all"))
    assert max(residuals(lm, held.deltas, old, "all")) <= 1e-4
    assert max(residuals(lm, objects_only.deltas, old, "all")) > 1e-2
    assert held.constraint_rank[1] > objects_only.constraint_rank[1]


def test_holding_every_position_leaves_out_a_fact_whose_prompt_starts_with_the_new_subject(embedded_tokenizer):
    """With ``all``, "Aria Nakamura lives in" holds the key at "Aria", which is the key of a new
    fact about "Aria": holding it would make that edit a no-op at its own key, silently. The
    engine leaves such a fact out of the protection (as it does a fact with the same subject);
    holding the object positions only, it stays protected."""
    from memlog.engine.constraints import protectable

    lm = _tiny(embedded_tokenizer)
    covs = _covs(lm, CHEAP)
    old = [Fact("Aria Nakamura", "lives in", "Thessaloniki"), Fact("Bo Lindqvist", "lives in", "Valparaiso")]
    new = Fact("Aria", "works as", "pilot")
    stuck = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(old), "all"))
    assert max(residuals(lm, stuck.deltas, [new])) <= 1e-4  # the bug: the new key cannot move
    assert protectable(old, [new], "all") == old[1:]
    assert protectable(old, [new], "object") == old
    kept = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(protectable(old, [new], "all")), "all"))
    assert min(residuals(lm, kept.deltas, [new])) > 1e-2
    assert max(residuals(lm, kept.deltas, old[1:], "all")) <= 1e-4


def test_paraphrase_phrasings_are_held_when_asked(embedded_tokenizer):
    """``positions="subject+paraphrases"``: the subject's last token in each paraphrase that
    contains the subject is held as well (one more key per such paraphrase; a paraphrase
    without the subject adds none), where the bare-prompt protection leaves them free."""
    lm = _tiny(embedded_tokenizer)
    covs = _covs(lm, CHEAP)
    pool = mixed_pool(4)
    phrased = [
        Fact(f.subject, f.relation, f.object, paraphrases=(f"People say that {f.subject} {f.relation}", "Nobody in particular is named here"))
        for f in pool[:3]
    ]
    new = pool[3]
    for fact in phrased:
        apply_factors(lm, memit_edit(lm, [fact], CHEAP, covs).deltas)
    batch, rows, cols = bare_prompt_batch(lm, phrased, "subject+paraphrases")
    assert batch.fact_index.tolist() == [0, 0, 1, 1, 2, 2] and len(rows) == 6  # the prompt and the one paraphrase with the subject
    tokens = lm.tokenizer(phrased[0].paraphrases[0])["input_ids"]
    subject_end = len(lm.tokenizer("People say that " + phrased[0].subject)["input_ids"]) - 1
    assert int(cols[1]) == subject_end and tokens[: subject_end + 1] == batch.input_ids[1, : subject_end + 1].tolist()
    prompt_only = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(phrased)))
    held = memit_edit(lm, [new], CHEAP, covs, protect=Protection(tuple(phrased), "subject+paraphrases"))
    assert max(residuals(lm, held.deltas, phrased, "subject+paraphrases")) <= 1e-4
    assert max(residuals(lm, prompt_only.deltas, phrased, "subject+paraphrases")) > 1e-2
    assert held.constraint_rank[1] == 6 > prompt_only.constraint_rank[1] == 3
    with pytest.raises(ValueError, match="optionally with"):
        bare_prompt_batch(lm, phrased, "subject+neighbours")


def test_same_subject_facts_are_edited_jointly(embedded_tokenizer):
    lm = _tiny(embedded_tokenizer)
    covs = _covs(lm, CHEAP)
    lives = Fact("Aria Nakamura", "lives in", "Oslo")
    works = Fact("Aria Nakamura", "works as a", "pilot")
    apply_factors(lm, memit_edit(lm, [lives], CHEAP, covs).deltas)
    naive = memit_edit(lm, [works], CHEAP, covs, protect=Protection((lives,)))
    assert max(residuals(lm, naive.deltas, [works])) <= 1e-4  # holding the shared key forbids the edit at it
    joint = memit_edit(lm, [works, lives], CHEAP, covs, protect=Protection(()))
    for layer, factors in joint.deltas.items():
        assert factors.keys.shape[1] == 2
        assert torch.allclose(factors.keys[:, 0], factors.keys[:, 1])  # one key, one target: no conflict
    assert min(residuals(lm, joint.deltas, [works, lives])) > 1e-2  # the joint edit writes at the shared key


def _memory(tmp_path, tokenizer, intermediate=128, **engine):
    return init_memory(tmp_path / "s", ModelSpec(model="tiny-llama"), lm=_tiny(tokenizer, intermediate), memit=CHEAP, engine=EngineConfig(ppl_bound=None, **engine))


def test_constrained_inject_records_room_and_budget_prunes_nothing(tmp_path, embedded_tokenizer):
    mem = _memory(tmp_path, embedded_tokenizer, wake="constrained", protect_positions="subject")  # one key per protected fact
    try:
        facts = mixed_pool(6, names="shared") + [Fact(mixed_pool(6, names="shared")[0].subject, "plays the", "harp")]
        mem.inject(facts, audit=False)
        rooms = [e for e in mem.events() if isinstance(e, ConstraintRoom)]
        assert [r.protected for r in rooms] == [0, 1, 2, 3, 4, 5, 5]  # the same-subject fact is a companion, not protected
        assert rooms[-1].rank_left == [128 - 5, 128 - 5] and all(n > 0 for n in rooms[-1].delta_norm)
        report = mem.sleep(cycles=1)
        assert report.cycles[0].pruned == 0
        status = mem.status()
        assert status["room"]["rank_left"] and status["room"]["phase"] == "sleep"
    finally:
        mem.close()


def test_budget_prunes_once_the_room_runs_out(tmp_path, embedded_tokenizer):
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=12, wake="unconstrained", budget_action="prune")  # 10 % of 12 keys: 1 must stay free
    try:
        mem.inject(fact_pool(13), audit=False)
        mem.sleep(cycles=1, tau=1.0)
        pruned = [e for e in mem.events() if isinstance(e, EditPruned)]
        room = [e for e in mem.events() if isinstance(e, ConstraintRoom)][-1]
        assert min(room.rank_left) < 1 and pruned and "budget" in pruned[0].reason
    finally:
        mem.close()


def test_the_budget_releases_by_default_and_a_release_moves_no_weight(tmp_path, embedded_tokenizer):
    """Out of room, the default budget releases the facts its policy picks: their edits stay in
    the weights (the projection is the same before and after the releases), the cycle's second
    audit no longer covers them, the next room measurement holds fewer keys, and the store's
    status counts them. A new inject of a released fact supersedes its edit."""
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=12, wake="unconstrained")
    try:
        assert mem.config.budget_action == "release"
        facts = fact_pool(13)
        mem.inject(facts, audit=False)
        report = mem.sleep(cycles=1, tau=1.0)
        logged = [(i.seq, i.event) for i in mem.logged]
        released = [(seq, e) for seq, e in logged if isinstance(e, FactReleased)]
        assert released and not any(isinstance(e, EditPruned) for _, e in logged)
        assert report.cycles[0].released == len(released) and report.cycles[0].pruned == 0
        first, last = released[0][0], released[-1][0]
        with mem.weights_at(first - 1) as (_, _, before):
            pass
        with mem.weights_at(last) as (_, _, after):
            pass
        assert before == after  # the releases moved nothing
        post = [e for _, e in logged if isinstance(e, RecallAudited) and e.phase == "sleep-post"][-1]
        gone = {mem.ledger.entries[e.edit_id].fact_id for _, e in released}
        assert gone.isdisjoint(r.fact_id for r in post.results) and len(post.results) == 13 - len(gone)
        assert mem.status()["released_facts"] == len(gone) and mem.status()["active_facts"] == 13 - len(gone)
        assert all(mem.ledger.entries[e.edit_id].applied for _, e in released)
        again = next(f for f in facts if f.fact_id in gone)
        held_by = {mem.ledger.entries[e.edit_id].fact_id: e for _, e in released}
        outcome = mem.inject([again], audit=False).facts[0]
        assert outcome.status == "injected" and outcome.edit_id == held_by[again.fact_id].edit_id
        assert mem.ledger.facts[again.fact_id].active and mem.ledger.entries[outcome.edit_id].version == held_by[again.fact_id].version + 1
        assert len(mem.ledger.entries) == 13  # still one edit per fact
    finally:
        mem.close()


def test_new_stores_are_constrained_and_old_store_headers_read_as_unconstrained():
    assert EngineConfig().wake == "constrained"
    assert EngineConfig.from_dict({"cap": 50, "tau": 0.5}).wake == "unconstrained"
    assert EngineConfig.from_dict({"cap": 50, "wake": "constrained"}).wake == "constrained"
    assert EngineConfig().cap is None


def test_the_refresh_strategy_defaults_to_correct_under_constrained_wake_only():
    assert EngineConfig().refresh_strategy == "correct"
    assert EngineConfig(wake="unconstrained").refresh_strategy == "reinject"
    assert EngineConfig(refresh_mode="copy").refresh_strategy == "reinject"  # copy mode: the paper as written
    assert EngineConfig().with_overrides(refresh_mode="copy").refresh_strategy == "reinject"
    assert EngineConfig().with_overrides(refresh_strategy="reinject").refresh_strategy == "reinject"
    old_header = EngineConfig(wake="constrained", refresh_strategy="reinject").to_dict()
    assert EngineConfig.from_dict(old_header).refresh_strategy == "reinject"  # a stored choice stays
    assert EngineConfig.from_dict({"cap": 50}).refresh_strategy == "reinject"  # pre-wake stores: unconstrained
    assert EngineConfig.from_dict(EngineConfig().to_dict()).refresh_strategy == "correct"


def test_the_protected_positions_default_to_object_under_constrained_wake_only():
    assert EngineConfig().protect_positions == "object"
    assert EngineConfig(wake="unconstrained").protect_positions == "subject"  # the paper's experiments and the demo
    assert EngineConfig(refresh_mode="copy").protect_positions == "subject"
    assert EngineConfig(protect_positions="subject").protect_positions == "subject"
    assert EngineConfig.from_dict(EngineConfig().to_dict()).protect_positions == "object"
    written_before = {k: v for k, v in EngineConfig().to_dict().items() if k != "protect_positions"}
    assert EngineConfig.from_dict(written_before).protect_positions == "subject"  # a header without the setting


def test_a_store_protecting_object_positions_counts_their_keys_in_the_room(tmp_path, embedded_tokenizer):
    """``EngineConfig(protect_positions="object")``: wake and sleep solve under the object positions
    too, and the room (null-space rank left) counts every held key, not one per fact."""
    mem = _memory(tmp_path, embedded_tokenizer, intermediate=256, wake="constrained", protect_positions="object")
    try:
        facts = mixed_pool(4)
        mem.inject(facts, audit=False)
        lm = mem.editor.lm
        keys = [int(n) for n in torch.bincount(bare_prompt_batch(lm, facts, "object")[1])]
        assert mem.editor.key_counts(facts, "object") == keys and mem.editor.key_counts(facts) == [1] * 4
        assert sum(mem.editor.key_counts(facts, "all")) == mem.editor.audit_keys(facts, "all")[1].shape[1] > sum(keys)
        rooms = [e for e in mem.events() if isinstance(e, ConstraintRoom)]
        assert rooms[-1].rank_left == [256 - sum(keys[:3])] * 2  # the 4th inject held the first three facts' keys
        report = mem.sleep(cycles=1)
        room = [e for e in mem.events() if isinstance(e, ConstraintRoom)][-1]
        assert room.phase == "sleep" and room.rank_left == [256 - sum(keys)] * 2 and report.cycles[0].pruned == 0
    finally:
        mem.close()
    with pytest.raises(UserError, match="unknown protected positions 'verb'"):
        EngineConfig(protect_positions="verb")


def test_a_store_holding_part_of_the_keys_energy_uses_fewer_dimensions(tmp_path, embedded_tokenizer):
    """``protect_energy`` < 1: wake holds only the leading directions of the protected keys, so
    the room left is larger than the exact protection's, and the held keys move a little."""
    facts = mixed_pool(6)
    rooms, moved = {}, {}
    for energy in (1.0, 0.9):
        mem = _memory(tmp_path / str(energy), embedded_tokenizer, intermediate=256, wake="constrained", protect_positions="object", protect_energy=energy)
        try:
            mem.inject(facts[:5], audit=False)
            result = mem.editor.edit([facts[5]], protect=protection_of(mem.config, facts[:5]))
            moved[energy] = max(residuals(mem.editor.lm, result.deltas, facts[:5], "object"))
            mem.inject(facts[5:], audit=False)
            rooms[energy] = [e for e in mem.events() if isinstance(e, ConstraintRoom)][-1].rank_left
            assert EngineConfig.from_dict(EngineConfig(protect_energy=energy).to_dict()).protect_energy == energy
        finally:
            mem.close()
    held = len(bare_prompt_batch(_tiny(embedded_tokenizer), facts[:5], "object")[1])  # the five facts' object-position keys
    assert rooms[1.0] == [256 - held] * 2
    assert all(loose > exact for loose, exact in zip(rooms[0.9], rooms[1.0]))
    assert moved[1.0] <= 1e-4 < moved[0.9]
    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match="--protect-energy must be in"):
            EngineConfig(protect_energy=bad)
