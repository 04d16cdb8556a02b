"""Tamper evidence: the events' hash chain and the HEAD file.

An edited fact text, a deleted middle event and a deleted last event are each reported by
``verify_store`` (and ``memlog verify``, exit 2), and a writer refuses to append on top of
them. Logs written before the chain existed still open, replay and take their first write.
"""

from __future__ import annotations

import duckdb
import pytest

from memlog.core.facts import Fact
from memlog.store.chain import head_path, read_head
from memlog.store.log import FORMAT_VERSION
from memlog.store.store import Store, verify_store
from memlog.errors import IntegrityError
from tests.fakes import fake_memory
from tests.test_cli_tiny import run

FACTS = [Fact("Aria Nakamura", "lives in", "Porto"), Fact("Bo Lindqvist", "lives in", "Lyon"), Fact("Cy Okafor", "works at", "Acme")]


@pytest.fixture()
def store_dir(tmp_path):
    path = tmp_path / "s"
    mem = fake_memory(path)
    mem.inject(FACTS)
    mem.close()
    return path


def _sql(store_dir, *statements):
    with duckdb.connect(str(store_dir / "log.duckdb")) as conn:
        for sql in statements:
            conn.execute(sql)


def _problems(store_dir):
    with Store.open(store_dir) as st:
        return verify_store(st)


def _refuses_to_write(store_dir):
    with pytest.raises(IntegrityError, match="refusing to write"):
        Store.open(store_dir, writable=True)


def test_an_intact_store_has_a_full_chain_and_head(store_dir):
    assert _problems(store_dir) == []
    with Store.open(store_dir) as st:
        rows, links = st.log.chain_rows()
        assert [seq for seq, _ in links] == [row[0] for row in rows] == list(range(1, len(rows) + 1))
        assert read_head(store_dir).seq == st.log.head_seq() and read_head(store_dir) == st.log.chain_head()


def test_an_edited_fact_text_is_detected(store_dir, capsys):
    _sql(store_dir, "UPDATE events SET payload = replace(payload, 'Porto', 'Paris') WHERE kind = 'FactInjected'")
    with Store.open(store_dir) as st:
        (seq,) = [le.seq for le in st.log.read(kinds=["FactInjected"]) if le.event.fact.object == "Paris"]
    problems = _problems(store_dir)
    assert problems == [f"event seq {seq} does not match its link in the hash chain: its stored content, or the event before it, was changed or removed"]
    _refuses_to_write(store_dir)
    code, report, _ = run(capsys, "verify", "--store", store_dir, "--format", "json")
    assert code == 2 and report["problems"] == problems
    code, _, err = run(capsys, "gc", "--store", store_dir)
    assert code == 2 and "hash chain" in err


def test_a_deleted_last_event_is_detected(store_dir):
    with Store.open(store_dir) as st:
        last = st.log.head_seq()
    _sql(store_dir, f"DELETE FROM events WHERE seq = {last}", f"DELETE FROM chain WHERE seq = {last}")
    assert _problems(store_dir) == [f"the log ends at seq {last - 1}, but HEAD records seq {last}: the last 1 event(s) were removed"]
    _refuses_to_write(store_dir)


def test_a_deleted_middle_event_is_detected_even_with_its_link(store_dir):
    _sql(store_dir, "DELETE FROM events WHERE seq = 3", "DELETE FROM chain WHERE seq = 3")
    problems = _problems(store_dir)
    assert "seq gap: 2 is followed by 4 (missing 3..3)" in problems
    assert any(p.startswith("event seq 4 does not match its link") for p in problems)
    _refuses_to_write(store_dir)


def test_a_removed_chain_table_is_detected(store_dir):
    _sql(store_dir, "DROP TABLE chain")
    assert _problems(store_dir) == [f"the log has no hash chain, but {head_path(store_dir)} records one: the chain was removed"]
    _refuses_to_write(store_dir)


def test_a_crash_before_the_head_write_is_accepted(store_dir):
    """A commit that landed while its HEAD write did not: the log is ahead of HEAD, consistently."""
    before = read_head(store_dir)
    mem = fake_memory(store_dir)
    mem.inject([Fact("Di Marsh", "lives in", "Oslo")])
    mem.close()
    head_path(store_dir).write_bytes(f'{{"seq":{before.seq},"hash":"{before.hash}"}}'.encode())
    assert _problems(store_dir) == []
    mem = fake_memory(store_dir)  # writable open accepted; the next commit moves HEAD on
    mem.audit()
    assert read_head(store_dir).seq == mem.head_seq
    mem.close()


def _make_format_1(store_dir):
    """As memlog wrote logs before the chain: no chain table, format 1, no HEAD file."""
    _sql(store_dir, "DROP TABLE chain", "UPDATE header SET value = '1' WHERE key = 'format'")
    head_path(store_dir).unlink()


def test_a_format_1_log_reads_replays_and_is_chained_by_its_first_write(store_dir, capsys):
    mem = fake_memory(store_dir)
    weights_before = mem.project()
    ledger_before = sorted((e.edit_id, e.version, e.applied) for e in mem.ledger.entries.values())
    mem.close()
    _make_format_1(store_dir)
    assert _problems(store_dir) == []
    code, report, _ = run(capsys, "verify", "--store", store_dir, "--format", "json")
    assert "no hash chain yet" in " ".join(report["notes"])
    mem = fake_memory(store_dir)
    assert mem.project() == weights_before
    assert sorted((e.edit_id, e.version, e.applied) for e in mem.ledger.entries.values()) == ledger_before
    assert not mem.store.log.chained()
    mem.audit()  # the first write chains every event
    mem.close()
    with Store.open(store_dir) as st:
        assert st.log.chained() and st.log.header_values()["format"] == FORMAT_VERSION
        rows, links = st.log.chain_rows()
        assert len(links) == len(rows) and read_head(store_dir).seq == rows[-1][0]
    assert _problems(store_dir) == []
    _sql(store_dir, "UPDATE events SET payload = replace(payload, 'Lyon', 'Nice') WHERE kind = 'FactInjected'")
    assert len(_problems(store_dir)) == 1
