"""The ``measures`` view: one row per recall audit, its generalisation and specificity means.

One row per audit: ``seq, ts, cycle, phase, audited, recall, degraded, degraded_by,
paraphrase_recall, neighbour_unchanged, chat_recall`` (means over the measured facts).
"""

from __future__ import annotations

SQL = """
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
