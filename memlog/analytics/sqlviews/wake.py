"""The ``wake`` view: one row per injection and the wake audit after it (the paper's Table 3).

One row per injection (the paper's Table 3): ``injection`` (1, 2, …), ``seq, fact_id, edit_id,
version, subject, relation, object, v_loss, seconds, cycles_before`` (sleep cycles completed
before it), then the wake audit that followed it: ``audit_seq, audited`` (facts audited),
``recall, degraded, recalled`` (the injected fact itself), and ``ppl`` when a wake-phase
perplexity was measured before the next injection.
"""

from __future__ import annotations

SQL = """
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
