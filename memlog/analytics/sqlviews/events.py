"""The ``events`` view: one row per event, its common payload fields decoded.

One row per event: ``seq, ts, kind, schema, edit_id, version, fact_id, cycle`` (``fact_id``
is filled in for reverts and prunes from the edit's owner), the common payload fields
``phase, recall, degraded, ppl, reason, mode, v_loss, subject, relation, object, copy_of,
n_constraint_keys, seconds``, and the raw ``payload``.
"""

from __future__ import annotations

SQL = """
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
