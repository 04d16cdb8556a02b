"""The ``audits`` view: one row per fact per recall audit.

One row per fact per audit: ``seq, ts, cycle, phase, fact_id, edit_id, recalled, completion,
result_index`` (the fact's place in that audit), ``paraphrase`` (fraction of its paraphrases
recalled), ``neighbours`` (fraction of its neighbourhood prompts unchanged), ``chat``
(chat-template recall); these three are null where not measured (wake audits, facts without
probes, older logs).
"""

from __future__ import annotations

SQL = """
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
