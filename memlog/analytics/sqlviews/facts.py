"""The ``facts`` view: one row per fact ever injected, its state at the head of the log.

One row per fact ever injected: ``fact_id, subject, relation, object`` (the latest record),
``first_seq, active`` (at the head of the log), ``pruned_seq`` (when it left the ledger; null
while active), ``released_seq`` (when the budget or the user released it: its edit stays in the
weights, no longer looked after; null while active, and again once it is injected anew), ``audits`` (audit results naming it), ``times_degraded`` (audits that found it
not recalled), ``cycles_degraded`` (sleep cycles whose pre-refresh audit found it not
recalled), ``last_recalled`` (the latest audit's verdict), ``last_recalled_seq`` (the latest
audit that found it recalled), ``last_audit_seq, last_completion, refreshes, injections,
updates, edit_id, version`` (the edit holding it now, released or not; null once pruned), ``prompt`` (the text
recall completes: the relation's ``{}`` template filled, or subject + relation), and the
latest probe measures ``last_paraphrase, last_neighbours, last_chat``.
"""

from __future__ import annotations

SQL = """
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
released AS (
    SELECT edit_id, max(seq) AS seq FROM log.events WHERE kind = 'FactReleased' GROUP BY edit_id
),
entries AS (
    -- a ledger entry is an edit_id; it leaves the ledger when pruned, or, for a copy-mode
    -- refresh, when that refresh is rolled back
    SELECT c.edit_id, any_value(c.fact_id) AS fact_id, min(c.seq) AS created_seq,
           any_value(p.seq) AS pruned_seq,
           -- released, unless injected anew after it (a new version of the same edit)
           CASE WHEN any_value(rl.seq) > max(c.seq) THEN any_value(rl.seq) END AS released_seq,
           bool_or(c.copy_of IS NOT NULL AND r.seq IS NOT NULL) AS dropped_copy
    FROM created c
    LEFT JOIN pruned p ON p.edit_id = c.edit_id
    LEFT JOIN released rl ON rl.edit_id = c.edit_id
    LEFT JOIN rolled r ON r.edit_id = c.edit_id AND r.version = c.version
    GROUP BY c.edit_id
),
holder AS (
    SELECT fact_id,
           bool_or(pruned_seq IS NULL AND NOT dropped_copy AND released_seq IS NULL) AS active,
           max(released_seq) FILTER (WHERE pruned_seq IS NULL AND NOT dropped_copy) AS released_seq,
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
       CASE WHEN h.active OR h.released_seq IS NOT NULL THEN NULL ELSE h.last_pruned_seq END AS pruned_seq,
       h.released_seq,
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
