"""Limits checked before any work: layer ranges, fact part lengths, a read-only or closed
Memory, an export directory inside the store."""

from __future__ import annotations

import pytest

from memlog.core.facts import MAX_RELATION_CHARS, MAX_SUBJECT_CHARS, Fact
from memlog.core.model import format_layers, parse_layers
from memlog.engine.memory import Memory
from memlog.errors import UserError
from memlog.store.outdir import check_out
from memlog.store.store import Store
from tests.fakes import FakeEditor, FakeWeights, fake_memory


def test_a_huge_layer_range_is_refused_before_it_is_built():
    with pytest.raises(UserError, match=r"--layers 0-2000000000 is out of range: memlog handles at most 4096 layers"):
        parse_layers("0-2000000000")


def test_a_range_past_the_model_names_it_and_the_layer_count():
    with pytest.raises(UserError, match=r"--layers 99-200 is out of range: this model has 30 layers \(0-29\)$"):
        parse_layers("99-200", n_layers=30)
    assert parse_layers("2-4,7", n_layers=30) == [2, 3, 4, 7]
    assert format_layers(list(range(99, 201))) == "99-200" and format_layers([2, 3, 4, 7]) == "2-4,7"


@pytest.mark.parametrize("part, limit", [("subject", MAX_SUBJECT_CHARS), ("relation", MAX_RELATION_CHARS)])
def test_subject_and_relation_have_length_limits(part, limit):
    parts = {"subject": "Aria Nakamura", "relation": "lives in", "object": "Porto"}
    Fact(**{**parts, part: "x" * limit})
    with pytest.raises(UserError, match=rf"{part} is {limit + 1} characters long; the limit is {limit}"):
        Fact(**{**parts, part: "x" * (limit + 1)})
    with pytest.raises(UserError, match=f"{part} is 10000 characters"):
        Fact(**{**parts, part: "y" * 10_000})


def _blob_count(store: Store) -> int:
    return len(store.blobs.list_blobs())


def test_read_only_memory_refuses_inject_before_editing_or_writing(tmp_path):
    path = tmp_path / "s"
    fake_memory(path).close()
    weights = FakeWeights()
    editor = FakeEditor(weights)
    mem = Memory(Store.open(path, writable=False), editor, weights)
    blobs = _blob_count(mem.store)
    for action in (lambda: mem.inject([Fact("Aria Nakamura", "lives in", "Porto")]), mem.audit, lambda: mem.sleep(cycles=1), lambda: mem.revert("e00001")):
        with pytest.raises(UserError, match="writable"):
            action()
    assert editor.edits == 0 and _blob_count(mem.store) == blobs and mem.store.log.head_seq() == 1


def test_closed_memory_refuses_inject_before_editing_or_writing(tmp_path):
    mem = fake_memory(tmp_path / "s")
    mem.close()
    blobs, edits = _blob_count(mem.store), mem.editor.edits
    with pytest.raises(UserError, match="was closed"):
        mem.inject([Fact("Aria Nakamura", "lives in", "Porto")])
    assert mem.editor.edits == edits and _blob_count(mem.store) == blobs


@pytest.mark.parametrize("inside", [".", "report", "deltas.zarr/tmp/out", "deltas.zarr"])
def test_export_inside_the_store_is_refused(tmp_path, inside):
    store = tmp_path / "s"
    fake_memory(store).close()
    with pytest.raises(UserError, match="inside the store"):
        check_out(store / inside, store)
    check_out(tmp_path / "elsewhere", store)
