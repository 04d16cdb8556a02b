"""The stable SQL views over a store's event log: their definitions and ``create_views``.

The log (``<store>/log.duckdb``, see ``memlog.store.log``) holds the raw tables ``events``,
``edit_versions`` and ``header``; each event's fields sit in the ``payload`` JSON. The views
below decode it with DuckDB's JSON functions, so they are plain SQL and work on any DuckDB
connection in which the log is attached as ``log``:

``events``
    one row per event: ``seq, ts, kind, schema, edit_id, version, fact_id, cycle`` (``fact_id``
    is filled in for reverts and prunes from the edit's owner), the common payload fields
    ``phase, recall, degraded, ppl, reason, mode, v_loss, subject, relation, object, copy_of,
    n_constraint_keys, seconds``, and the raw ``payload``.
``edits``
    one row per edit version (each ``FactInjected`` and ``EditRefreshed``): ``edit_id, version,
    fact_id, subject, relation, object, layers`` (list), ``ranks`` (rank per layer, aligned with
    ``layers``), ``rank`` (the largest), ``scale, mode`` (``wake`` or ``update`` for an injection,
    the refresh mode ``in-place``/``copy`` for a refresh), ``created_by, created_seq,
    superseded_seq`` (a later version of the same edit was created), ``reverted_seq`` (the first
    ``EditReverted`` of this version), ``rolled_back_seq, pruned_seq, cycle`` (of a refresh),
    ``copy_of, v_loss, n_constraint_keys, supersedes_version``.
``facts``
    one row per fact ever injected: ``fact_id, subject, relation, object`` (the latest record),
    ``first_seq, active`` (at the head of the log), ``pruned_seq`` (when it left the ledger; null
    while active), ``audits`` (audit results naming it), ``times_degraded`` (audits that found it
    not recalled), ``cycles_degraded`` (sleep cycles whose pre-refresh audit found it not
    recalled), ``last_recalled`` (the latest audit's verdict), ``last_recalled_seq`` (the latest
    audit that found it recalled), ``last_audit_seq, last_completion, refreshes, injections,
    updates, edit_id, version`` (the edit holding it now; null once pruned), ``prompt`` (the text
    recall completes: the relation's ``{}`` template filled, or subject + relation), and the
    latest probe measures ``last_paraphrase, last_neighbours, last_chat``.
``cycles``
    one row per completed sleep cycle (``SleepEnded``): ``cycle, started_seq, ended_seq,
    recall_before, recall_after, degraded_before, degraded_after`` (over every fact ever injected,
    a pruned fact counting as degraded: the paper's measure), ``recall_before_active,
    recall_after_active, degraded_before_active, degraded_after_active`` (over the facts active at
    the audit), ``refreshed, reverted, pruned, rolled_back, blocked, failed`` (refreshes that could
    not be solved), ``held`` (manually reverted facts sleep left alone), ``ledger_size, active_facts, ppl_before, ppl_after, ppl_drift`` (relative),
    ``wall_seconds, refresh_mode, refresh_strategy, cap, tau, facts_injected`` (injections before the cycle ended),
    ``facts_known`` (distinct facts injected before it ended, pruned ones included),
    ``step_seconds`` (JSON), and from the cycle's ``ConstraintRoom`` (null where none was
    measured: a count cap with unconstrained wake, or older logs) ``rank_left`` and ``delta_norm``
    (JSON lists, one entry per edit layer: the null-space rank left and ‖W − W_base‖_F/‖W_base‖_F),
    ``min_rank_left``, ``max_delta_norm``.
``audits``
    one row per fact per audit: ``seq, ts, cycle, phase, fact_id, edit_id, recalled, completion,
    result_index`` (the fact's place in that audit), ``paraphrase`` (fraction of its paraphrases
    recalled), ``neighbours`` (fraction of its neighbourhood prompts unchanged), ``chat``
    (chat-template recall); these three are null where not measured (wake audits, facts without
    probes, older logs).
``measures``
    one row per audit: ``seq, ts, cycle, phase, audited, recall, degraded, degraded_by,
    paraphrase_recall, neighbour_unchanged, chat_recall`` (means over the measured facts).
``wake``
    one row per injection (the paper's Table 3): ``injection`` (1, 2, …), ``seq, fact_id, edit_id,
    version, subject, relation, object, v_loss, seconds, cycles_before`` (sleep cycles completed
    before it), then the wake audit that followed it: ``audit_seq, audited`` (facts audited),
    ``recall, degraded, recalled`` (the injected fact itself), and ``ppl`` when a wake-phase
    perplexity was measured before the next injection.

The raw tables stay reachable as ``log.events``, ``log.edit_versions`` and ``log.header``.

``create_views`` creates them on such a connection (``memlog.analytics.connection`` makes
the read-only one ``memlog sql`` uses); ``EXAMPLE_QUERIES`` are the documented examples.
"""

from __future__ import annotations

import duckdb

_EVENTS_SQL = """
SELECT e.seq, e.ts, e.kind, e.schema, e.edit_id, e.version,
       coalesce(e.fact_id, o.fact_id) AS fact_id,
       e.cycle,
       e.payload->>'$.phase' AS phase,
       TRY_CAST(e.payload->>'$.recall' AS DOUBLE) AS recall,
       TRY_CAST(e.payload->>'$.degraded' AS INTEGER) AS degraded,
       TRY_CAST(e.payload->>'$.ppl' AS DOUBLE) AS ppl,
       e.payload->>'$.reason' AS reason,
       e.payload->>'$.mode' AS mode,
       TRY_CAST(e.payload->>'$.v_loss' AS DOUBLE) AS v_loss,
       e.payload->>'$.fact.subject' AS subject,
       e.payload->>'$.fact.relation' AS relation,
       e.payload->>'$.fact.object' AS object,
       e.payload->>'$.copy_of' AS copy_of,
       TRY_CAST(e.payload->>'$.n_constraint_keys' AS INTEGER) AS n_constraint_keys,
       TRY_CAST(e.payload->>'$.seconds' AS DOUBLE) AS seconds,
       e.payload
FROM log.events e
LEFT JOIN (
    SELECT edit_id, any_value(fact_id) AS fact_id
    FROM log.events WHERE kind IN ('FactInjected', 'EditRefreshed')
    GROUP BY edit_id
) o ON o.edit_id = e.edit_id
ORDER BY e.seq
"""

_AUDITS_SQL = """
SELECT a.seq, a.ts, a.cycle, a.phase,
       a.r->>'$.fact_id' AS fact_id,
       a.r->>'$.edit_id' AS edit_id,
       TRY_CAST(a.r->>'$.recalled' AS BOOLEAN) AS recalled,
       a.r->>'$.completion' AS completion,
       TRY_CAST(a.r->>'$.paraphrase' AS DOUBLE) AS paraphrase,
       TRY_CAST(a.r->>'$.neighbours' AS DOUBLE) AS neighbours,
       TRY_CAST(a.r->>'$.chat' AS BOOLEAN) AS chat
FROM (
    SELECT seq, ts, cycle, payload->>'$.phase' AS phase,
           unnest(json_extract(payload, '$.results[*]')) AS r
    FROM log.events WHERE kind = 'RecallAudited'
) a
"""

_EDITS_SQL = """
WITH created AS (
    SELECT seq, kind, edit_id, version, fact_id, cycle, payload
    FROM log.events WHERE kind IN ('FactInjected', 'EditRefreshed')
),
marks AS (
    SELECT kind, edit_id, version, min(seq) AS seq
    FROM log.events WHERE kind IN ('EditReverted', 'EditPruned', 'RefreshRolledBack')
    GROUP BY kind, edit_id, version
)
SELECT c.edit_id, c.version, c.fact_id,
       c.payload->>'$.fact.subject' AS subject,
       c.payload->>'$.fact.relation' AS relation,
       c.payload->>'$.fact.object' AS object,
       TRY_CAST(json_extract(c.payload, '$.deltas[*].layer') AS INTEGER[]) AS layers,
       TRY_CAST(list_concat(json_extract(c.payload, '$.deltas[*].packed.shape[1]'),
                            json_extract(c.payload, '$.deltas[*].u.shape[1]')) AS INTEGER[]) AS ranks,
       list_max(TRY_CAST(list_concat(json_extract(c.payload, '$.deltas[*].packed.shape[1]'),
                                     json_extract(c.payload, '$.deltas[*].u.shape[1]')) AS INTEGER[])) AS rank,
       TRY_CAST(c.payload->>'$.scale' AS DOUBLE) AS scale,
       CASE
           WHEN c.kind = 'EditRefreshed' THEN c.payload->>'$.mode'
           WHEN c.payload->>'$.supersedes_version' IS NOT NULL THEN 'update'
           ELSE 'wake'
       END AS mode,
       c.kind AS created_by,
       c.seq AS created_seq,
       (SELECT min(n.seq) FROM created n
         WHERE n.edit_id = c.edit_id AND n.version > c.version AND n.seq > c.seq) AS superseded_seq,
       rv.seq AS reverted_seq,
       rb.seq AS rolled_back_seq,
       pr.seq AS pruned_seq,
       c.cycle,
       c.payload->>'$.copy_of' AS copy_of,
       TRY_CAST(c.payload->>'$.v_loss' AS DOUBLE) AS v_loss,
       TRY_CAST(c.payload->>'$.n_constraint_keys' AS INTEGER) AS n_constraint_keys,
       TRY_CAST(c.payload->>'$.supersedes_version' AS INTEGER) AS supersedes_version
FROM created c
LEFT JOIN marks rv ON rv.kind = 'EditReverted' AND rv.edit_id = c.edit_id AND rv.version = c.version AND rv.seq > c.seq
LEFT JOIN marks rb ON rb.kind = 'RefreshRolledBack' AND rb.edit_id = c.edit_id AND rb.version = c.version AND rb.seq > c.seq
LEFT JOIN marks pr ON pr.kind = 'EditPruned' AND pr.edit_id = c.edit_id AND pr.version = c.version AND pr.seq > c.seq
ORDER BY c.seq
"""

_FACTS_SQL = """
WITH created AS (
    SELECT seq, kind, edit_id, version, fact_id,
           payload->>'$.fact.subject' AS subject,
           payload->>'$.fact.relation' AS relation,
           payload->>'$.fact.object' AS object,
           payload->>'$.copy_of' AS copy_of,
           payload->>'$.supersedes_version' AS supersedes_version
    FROM log.events WHERE kind IN ('FactInjected', 'EditRefreshed')
),
rolled AS (
    SELECT edit_id, version, min(seq) AS seq FROM log.events
    WHERE kind = 'RefreshRolledBack' GROUP BY edit_id, version
),
pruned AS (
    SELECT edit_id, min(seq) AS seq FROM log.events WHERE kind = 'EditPruned' GROUP BY edit_id
),
entries AS (
    -- a ledger entry is an edit_id; it leaves the ledger when pruned, or, for a copy-mode
    -- refresh, when that refresh is rolled back
    SELECT c.edit_id, any_value(c.fact_id) AS fact_id, min(c.seq) AS created_seq,
           any_value(p.seq) AS pruned_seq,
           bool_or(c.copy_of IS NOT NULL AND r.seq IS NOT NULL) AS dropped_copy
    FROM created c
    LEFT JOIN pruned p ON p.edit_id = c.edit_id
    LEFT JOIN rolled r ON r.edit_id = c.edit_id AND r.version = c.version
    GROUP BY c.edit_id
),
holder AS (
    SELECT fact_id,
           bool_or(pruned_seq IS NULL AND NOT dropped_copy) AS active,
           max(pruned_seq) AS last_pruned_seq,
           arg_max(edit_id, created_seq) FILTER (WHERE pruned_seq IS NULL AND NOT dropped_copy) AS edit_id
    FROM entries GROUP BY fact_id
),
live_version AS (
    SELECT c.edit_id, max(c.version) AS version FROM created c
    WHERE NOT EXISTS (SELECT 1 FROM rolled r WHERE r.edit_id = c.edit_id AND r.version = c.version)
    GROUP BY c.edit_id
),
described AS (
    SELECT fact_id,
           arg_max(subject, seq) AS subject,
           arg_max(relation, seq) AS relation,
           arg_max(object, seq) AS object,
           min(seq) AS first_seq,
           count(*) FILTER (WHERE kind = 'FactInjected') AS injections,
           count(*) FILTER (WHERE kind = 'FactInjected' AND supersedes_version IS NOT NULL) AS updates,
           count(*) FILTER (WHERE kind = 'EditRefreshed') AS refreshes
    FROM created GROUP BY fact_id
),
audit_stats AS (
    SELECT fact_id,
           count(*) AS audits,
           count(*) FILTER (WHERE NOT recalled) AS times_degraded,
           count(DISTINCT cycle) FILTER (WHERE NOT recalled AND phase = 'sleep-pre') AS cycles_degraded,
           arg_max(recalled, seq) AS last_recalled,
           max(seq) FILTER (WHERE recalled) AS last_recalled_seq,
           max(seq) AS last_audit_seq,
           arg_max(completion, seq) AS last_completion,
           arg_max(paraphrase, seq) FILTER (WHERE paraphrase IS NOT NULL) AS last_paraphrase,
           arg_max(neighbours, seq) FILTER (WHERE neighbours IS NOT NULL) AS last_neighbours,
           arg_max(chat, seq) FILTER (WHERE chat IS NOT NULL) AS last_chat
    FROM audits GROUP BY fact_id
)
SELECT d.fact_id, d.subject, d.relation, d.object,
       -- the same rule as memlog.core.facts.Fact.prompt (a test holds them equal)
       CASE
           WHEN contains(d.relation, '{}') THEN replace(d.relation, '{}', d.subject)
           WHEN left(d.relation, 1) IN ('''', '\u2019') THEN d.subject || d.relation
           ELSE d.subject || ' ' || d.relation
       END AS prompt,
       d.first_seq,
       h.active,
       CASE WHEN h.active THEN NULL ELSE h.last_pruned_seq END AS pruned_seq,
       coalesce(a.audits, 0) AS audits,
       coalesce(a.times_degraded, 0) AS times_degraded,
       coalesce(a.cycles_degraded, 0) AS cycles_degraded,
       a.last_recalled, a.last_recalled_seq, a.last_audit_seq, a.last_completion,
       a.last_paraphrase, a.last_neighbours, a.last_chat,
       d.refreshes, d.injections, d.updates,
       h.edit_id,
       v.version
FROM described d
JOIN holder h USING (fact_id)
LEFT JOIN audit_stats a USING (fact_id)
LEFT JOIN live_version v ON v.edit_id = h.edit_id
ORDER BY d.first_seq
"""

_CYCLES_SQL = """
WITH started AS (
    SELECT cycle, max(seq) AS seq, arg_max(payload, seq) AS payload
    FROM log.events WHERE kind = 'SleepStarted' GROUP BY cycle
),
sleep_audits AS (
    SELECT cycle, payload->>'$.phase' AS phase, max(seq) AS seq,
           arg_max(json_array_length(payload->'$.results') - TRY_CAST(payload->>'$.degraded' AS INTEGER), seq) AS hits
    FROM log.events WHERE kind = 'RecallAudited' AND payload->>'$.phase' IN ('sleep-pre', 'sleep-post')
    GROUP BY cycle, payload->>'$.phase'
),
base AS (
    SELECT e.*,
           s.seq AS started_seq, s.payload AS started_payload,
           (SELECT count(*) FROM log.events i WHERE i.kind = 'FactInjected' AND i.seq < e.seq) AS facts_injected,
           (SELECT count(DISTINCT i.fact_id) FROM log.events i WHERE i.kind = 'FactInjected' AND i.seq < e.seq) AS facts_known,
           pre.hits AS hits_before, post.hits AS hits_after
    FROM log.events e
    LEFT JOIN started s ON s.cycle = e.cycle AND s.seq < e.seq
    LEFT JOIN sleep_audits pre ON pre.cycle = e.cycle AND pre.phase = 'sleep-pre' AND pre.seq < e.seq
    LEFT JOIN sleep_audits post ON post.cycle = e.cycle AND post.phase = 'sleep-post' AND post.seq < e.seq
    WHERE e.kind = 'SleepEnded'
),
room AS (
    SELECT TRY_CAST(payload->>'$.cycle' AS INTEGER) AS cycle, arg_max(payload, seq) AS payload
    FROM log.events WHERE kind = 'ConstraintRoom' AND payload->>'$.phase' = 'sleep'
    GROUP BY TRY_CAST(payload->>'$.cycle' AS INTEGER)
)
SELECT e.cycle,
       e.started_seq,
       e.seq AS ended_seq,
       e.hits_before / nullif(e.facts_known, 0) AS recall_before,
       e.hits_after / nullif(e.facts_known, 0) AS recall_after,
       e.facts_known - e.hits_before AS degraded_before,
       e.facts_known - e.hits_after AS degraded_after,
       TRY_CAST(e.payload->>'$.recall_before' AS DOUBLE) AS recall_before_active,
       TRY_CAST(e.payload->>'$.recall_after' AS DOUBLE) AS recall_after_active,
       TRY_CAST(e.payload->>'$.degraded_before' AS INTEGER) AS degraded_before_active,
       TRY_CAST(e.payload->>'$.degraded_after' AS INTEGER) AS degraded_after_active,
       TRY_CAST(e.payload->>'$.refreshed' AS INTEGER) AS refreshed,
       TRY_CAST(e.payload->>'$.reverted' AS INTEGER) AS reverted,
       TRY_CAST(e.payload->>'$.pruned' AS INTEGER) AS pruned,
       TRY_CAST(e.payload->>'$.rolled_back' AS INTEGER) AS rolled_back,
       TRY_CAST(e.payload->>'$.step_seconds.blocked' AS INTEGER) AS blocked,
       coalesce(TRY_CAST(e.payload->>'$.step_seconds.failed' AS INTEGER), 0) AS failed,
       coalesce(TRY_CAST(e.payload->>'$.step_seconds.held' AS INTEGER), 0) AS held,
       TRY_CAST(e.payload->>'$.ledger_size' AS INTEGER) AS ledger_size,
       TRY_CAST(e.payload->>'$.active_facts' AS INTEGER) AS active_facts,
       TRY_CAST(e.payload->>'$.ppl_before' AS DOUBLE) AS ppl_before,
       TRY_CAST(e.payload->>'$.ppl_after' AS DOUBLE) AS ppl_after,
       (TRY_CAST(e.payload->>'$.ppl_after' AS DOUBLE) - TRY_CAST(e.payload->>'$.ppl_before' AS DOUBLE))
           / nullif(TRY_CAST(e.payload->>'$.ppl_before' AS DOUBLE), 0) AS ppl_drift,
       TRY_CAST(e.payload->>'$.seconds' AS DOUBLE) AS wall_seconds,
       e.started_payload->>'$.refresh_mode' AS refresh_mode,
       coalesce(e.started_payload->>'$.refresh_strategy', 'reinject') AS refresh_strategy,
       TRY_CAST(e.started_payload->>'$.cap' AS INTEGER) AS cap,
       TRY_CAST(e.started_payload->>'$.tau' AS DOUBLE) AS tau,
       e.facts_injected,
       e.facts_known,
       e.payload->'$.step_seconds' AS step_seconds,
       r.payload->'$.rank_left' AS rank_left,
       r.payload->'$.delta_norm' AS delta_norm,
       list_min(CAST(r.payload->'$.rank_left' AS INTEGER[])) AS min_rank_left,
       list_max(CAST(r.payload->'$.delta_norm' AS DOUBLE[])) AS max_delta_norm
FROM base e
LEFT JOIN room r ON r.cycle = e.cycle
ORDER BY e.seq
"""

_WAKE_SQL = """
WITH inj AS (
    SELECT seq, edit_id, version, fact_id, payload,
           row_number() OVER (ORDER BY seq) AS injection,
           lead(seq) OVER (ORDER BY seq) AS next_seq
    FROM log.events WHERE kind = 'FactInjected'
),
wake_audits AS (
    SELECT seq, payload FROM log.events
    WHERE kind = 'RecallAudited' AND payload->>'$.phase' = 'wake'
),
wake_ppl AS (
    SELECT seq, TRY_CAST(payload->>'$.ppl' AS DOUBLE) AS ppl FROM log.events
    WHERE kind = 'PerplexityMeasured' AND payload->>'$.phase' = 'wake'
),
picked AS (
    SELECT i.seq AS inject_seq,
           (SELECT min(a.seq) FROM wake_audits a
             WHERE a.seq > i.seq AND (i.next_seq IS NULL OR a.seq < i.next_seq)) AS audit_seq,
           (SELECT arg_min(p.ppl, p.seq) FROM wake_ppl p
             WHERE p.seq > i.seq AND (i.next_seq IS NULL OR p.seq < i.next_seq)) AS ppl
    FROM inj i
)
SELECT i.injection, i.seq, i.fact_id, i.edit_id, i.version,
       i.payload->>'$.fact.subject' AS subject,
       i.payload->>'$.fact.relation' AS relation,
       i.payload->>'$.fact.object' AS object,
       TRY_CAST(i.payload->>'$.v_loss' AS DOUBLE) AS v_loss,
       TRY_CAST(i.payload->>'$.seconds' AS DOUBLE) AS seconds,
       (SELECT count(*) FROM log.events s WHERE s.kind = 'SleepEnded' AND s.seq < i.seq) AS cycles_before,
       p.audit_seq,
       json_array_length(w.payload, '$.results') AS audited,
       TRY_CAST(w.payload->>'$.recall' AS DOUBLE) AS recall,
       TRY_CAST(w.payload->>'$.degraded' AS INTEGER) AS degraded,
       au.recalled,
       p.ppl
FROM inj i
JOIN picked p ON p.inject_seq = i.seq
LEFT JOIN wake_audits w ON w.seq = p.audit_seq
LEFT JOIN audits au ON au.seq = p.audit_seq AND au.fact_id = i.fact_id
ORDER BY i.seq
"""

_MEASURES_SQL = """
SELECT seq, ts, cycle, payload->>'$.phase' AS phase,
       json_array_length(payload, '$.results') AS audited,
       TRY_CAST(payload->>'$.recall' AS DOUBLE) AS recall,
       TRY_CAST(payload->>'$.degraded' AS INTEGER) AS degraded,
       coalesce(payload->>'$.degraded_by', 'exact') AS degraded_by,
       TRY_CAST(payload->>'$.paraphrase_recall' AS DOUBLE) AS paraphrase_recall,
       TRY_CAST(payload->>'$.neighbour_unchanged' AS DOUBLE) AS neighbour_unchanged,
       TRY_CAST(payload->>'$.chat_recall' AS DOUBLE) AS chat_recall
FROM log.events WHERE kind = 'RecallAudited'
ORDER BY seq
"""

# Creation order matters: ``facts`` and ``wake`` read the ``audits`` view.
VIEWS: tuple[tuple[str, str], ...] = (
    ("events", _EVENTS_SQL),
    ("audits", _AUDITS_SQL),
    ("edits", _EDITS_SQL),
    ("facts", _FACTS_SQL),
    ("cycles", _CYCLES_SQL),
    ("wake", _WAKE_SQL),
    ("measures", _MEASURES_SQL),
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
