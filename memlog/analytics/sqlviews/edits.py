"""The ``edits`` view: one row per edit version, with the marks later events put on it.

One row per edit version (each ``FactInjected`` and ``EditRefreshed``): ``edit_id, version,
fact_id, subject, relation, object, layers`` (list), ``ranks`` (rank per layer, aligned with
``layers``), ``rank`` (the largest), ``scale, mode`` (``wake`` or ``update`` for an injection,
the refresh mode ``in-place``/``copy`` for a refresh), ``created_by, created_seq,
superseded_seq`` (a later version of the same edit was created), ``reverted_seq`` (the first
``EditReverted`` of this version), ``rolled_back_seq, pruned_seq, cycle`` (of a refresh),
``copy_of, v_loss, v_loss_before`` (a refresh's object NLL on the weights it was solved on; null
for injections and older logs), ``n_constraint_keys, supersedes_version``, and the consolidation that took
this version among its members (``memlog consolidate``; the standing one if there is one, else
the latest): ``consolidation_id, consolidated_seq`` and ``consolidation_reverted_seq`` (null
while it stands); and the settings the version was solved with (``FactInjected.settings``; null
in logs written before they were recorded): ``wake, protect_positions, protect_energy,
lam, norm_penalty, v_stop``.
"""

from __future__ import annotations

SQL = """
WITH created AS (
    SELECT seq, kind, edit_id, version, fact_id, cycle, payload
    FROM log.events WHERE kind IN ('FactInjected', 'EditRefreshed')
),
marks AS (
    SELECT kind, edit_id, version, min(seq) AS seq
    FROM log.events WHERE kind IN ('EditReverted', 'EditPruned', 'RefreshRolledBack')
    GROUP BY kind, edit_id, version
),
members AS (
    SELECT e.seq, e.payload->>'$.consolidation_id' AS consolidation_id,
           m->>'$.edit_id' AS edit_id, CAST(m->>'$.version' AS INTEGER) AS version
    FROM log.events e, unnest(CAST(json_extract(e.payload, '$.members[*]') AS JSON[])) AS t(m)
    WHERE e.kind = 'Consolidated'
),
undone AS (
    SELECT payload->>'$.consolidation_id' AS consolidation_id, min(seq) AS seq
    FROM log.events WHERE kind = 'ConsolidationReverted' GROUP BY 1
),
latest AS (
    SELECT m.edit_id, m.version, m.consolidation_id, m.seq, u.seq AS reverted_seq,
           row_number() OVER (PARTITION BY m.edit_id, m.version ORDER BY (u.seq IS NULL) DESC, m.seq DESC) AS pick
    FROM members m LEFT JOIN undone u ON u.consolidation_id = m.consolidation_id
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
       TRY_CAST(c.payload->>'$.v_loss_before' AS DOUBLE) AS v_loss_before,
       TRY_CAST(c.payload->>'$.n_constraint_keys' AS INTEGER) AS n_constraint_keys,
       TRY_CAST(c.payload->>'$.supersedes_version' AS INTEGER) AS supersedes_version,
       co.consolidation_id,
       co.seq AS consolidated_seq,
       co.reverted_seq AS consolidation_reverted_seq,
       c.payload->>'$.settings.wake' AS wake,
       c.payload->>'$.settings.protect_positions' AS protect_positions,
       TRY_CAST(c.payload->>'$.settings.protect_energy' AS DOUBLE) AS protect_energy,
       TRY_CAST(c.payload->>'$.settings.lam' AS DOUBLE) AS lam,
       TRY_CAST(c.payload->>'$.settings.norm_penalty' AS DOUBLE) AS norm_penalty,
       c.payload->>'$.settings.v_stop' AS v_stop
FROM created c
LEFT JOIN marks rv ON rv.kind = 'EditReverted' AND rv.edit_id = c.edit_id AND rv.version = c.version AND rv.seq > c.seq
LEFT JOIN marks rb ON rb.kind = 'RefreshRolledBack' AND rb.edit_id = c.edit_id AND rb.version = c.version AND rb.seq > c.seq
LEFT JOIN marks pr ON pr.kind = 'EditPruned' AND pr.edit_id = c.edit_id AND pr.version = c.version AND pr.seq > c.seq
LEFT JOIN latest co ON co.edit_id = c.edit_id AND co.version = c.version AND co.pick = 1
ORDER BY c.seq
"""
