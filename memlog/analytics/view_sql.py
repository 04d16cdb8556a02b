"""The stable SQL views over a store's event log: which there are, and ``create_views``.

The log (``<store>/log.duckdb``, see ``memlog.store.log``) holds the raw tables ``events``,
``edit_versions`` and ``header``; each event's fields sit in the ``payload`` JSON. The views
decode it with DuckDB's JSON functions, so they are plain SQL and work on any DuckDB
connection in which the log is attached as ``log``. Each view's SQL, and what its columns
mean, is in its module under ``memlog.analytics.sqlviews``:

``events``
    one row per event, its common payload fields decoded (``sqlviews/events.py``);
``audits``
    one row per fact per audit (``sqlviews/audits.py``);
``edits``
    one row per edit version with the marks later events put on it (``sqlviews/edits.py``);
``facts``
    one row per fact ever injected, its state at the head of the log (``sqlviews/facts.py``);
``cycles``
    one row per completed sleep cycle; its columns are ``memlog.projections.readmodels.CycleRow``'s
    fields, and a test holds it equal to that Python fold (``sqlviews/cycles.py``);
``wake``
    one row per injection and the wake audit after it, the paper's Table 3 (``sqlviews/wake.py``);
``measures``
    one row per audit with its probe means (``sqlviews/measures.py``).

The raw tables stay reachable as ``log.events``, ``log.edit_versions`` and ``log.header``.

``create_views`` creates them on such a connection (``memlog.analytics.connection`` makes
the read-only one ``memlog sql`` uses); ``EXAMPLE_QUERIES`` are the documented examples.
"""

from __future__ import annotations

import duckdb

from memlog.analytics.sqlviews import audits, cycles, edits, events, facts, measures, wake

# Creation order matters: ``facts`` and ``wake`` read the ``audits`` view.
VIEWS: tuple[tuple[str, str], ...] = (
    ("events", events.SQL),
    ("audits", audits.SQL),
    ("edits", edits.SQL),
    ("facts", facts.SQL),
    ("cycles", cycles.SQL),
    ("wake", wake.SQL),
    ("measures", measures.SQL),
)
VIEW_NAMES: tuple[str, ...] = tuple(name for name, _ in VIEWS)

# Queries for the documentation (each is run by the tests): (question, SQL).
EXAMPLE_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Which facts were degraded in more than two sleep cycles?",
        "SELECT fact_id, subject, object, cycles_degraded, refreshes FROM facts "
        "WHERE cycles_degraded > 2 ORDER BY cycles_degraded DESC, fact_id",
    ),
    (
        "PPL drift per cycle",
        "SELECT cycle, ppl_before, ppl_after, round(100 * ppl_drift, 3) AS drift_pct FROM cycles ORDER BY cycle",
    ),
    (
        "The wake trajectory (the paper's Table 3)",
        "SELECT injection, audited AS facts, recall, degraded, ppl FROM wake ORDER BY injection",
    ),
    (
        "Refreshes and prunes per cycle (the paper's Table 6)",
        "SELECT cycle, recall_after AS recall, degraded_after AS degraded, refreshed, pruned FROM cycles ORDER BY cycle",
    ),
    (
        "Working edits that were pruned (applied, never reverted, fact recalled at the audit before)",
        "SELECT e.edit_id, e.version, e.subject, e.pruned_seq FROM edits e "
        "WHERE e.pruned_seq IS NOT NULL AND e.reverted_seq IS NULL AND e.superseded_seq IS NULL "
        "AND (SELECT arg_max(a.recalled, a.seq) FROM audits a WHERE a.fact_id = e.fact_id AND a.seq < e.pruned_seq) "
        "ORDER BY e.pruned_seq",
    ),
    (
        "Facts refreshed most often",
        "SELECT subject, relation, object, refreshes, active FROM facts ORDER BY refreshes DESC, first_seq LIMIT 10",
    ),
    (
        "Generalisation, specificity and chat recall per sleep cycle (after its refreshes)",
        "SELECT cycle, recall, paraphrase_recall, neighbour_unchanged, chat_recall FROM measures "
        "WHERE phase = 'sleep-post' ORDER BY cycle",
    ),
    (
        "Events per kind",
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC, kind",
    ),
)


def create_views(conn: duckdb.DuckDBPyConnection, temp: bool = False) -> None:
    """Create the views in ``conn``'s default database (or as TEMP views); ``log`` must be attached."""
    kind = "TEMP VIEW" if temp else "VIEW"
    for name, sql in VIEWS:
        conn.execute(f"CREATE OR REPLACE {kind} {name} AS {sql}")
