"""The ``cycles`` view: one row per completed sleep cycle (``SleepEnded``).

Its columns are ``memlog.projections.readmodels.CycleRow``'s fields, in that order, which also
documents what each means: the select list below is generated from them (``EXPRESSIONS`` must
name one SQL expression per field), and ``tests/test_readmodels.py`` holds the view equal to the
Python fold ``fold_cycles``, row by row. ``step_seconds`` is JSON here.
"""

from __future__ import annotations

from memlog.projections.readmodels import CYCLE_COLUMNS


def _payload(path: str, cast: str, of: str = "e.payload") -> str:
    return f"TRY_CAST({of}->>'$.{path}' AS {cast})"


_PPL_BEFORE, _PPL_AFTER = _payload("ppl_before", "DOUBLE"), _payload("ppl_after", "DOUBLE")

# One SQL expression per CycleRow field, over ``base`` (the SleepEnded rows, with the cycle's
# start, its sleep audits' hits and the injections before it).
EXPRESSIONS: dict[str, str] = {
    "cycle": "e.cycle",
    "started_seq": "e.started_seq",
    "ended_seq": "e.seq",
    "recall_before": "e.hits_before / nullif(e.facts_known, 0)",
    "recall_after": "e.hits_after / nullif(e.facts_known, 0)",
    "degraded_before": "e.facts_known - e.hits_before",
    "degraded_after": "e.facts_known - e.hits_after",
    "recall_before_active": _payload("recall_before", "DOUBLE"),
    "recall_after_active": _payload("recall_after", "DOUBLE"),
    "degraded_before_active": _payload("degraded_before", "INTEGER"),
    "degraded_after_active": _payload("degraded_after", "INTEGER"),
    "refreshed": _payload("refreshed", "INTEGER"),
    "reverted": _payload("reverted", "INTEGER"),
    "pruned": _payload("pruned", "INTEGER"),
    "released": f"coalesce({_payload('released', 'INTEGER')}, 0)",
    "rolled_back": _payload("rolled_back", "INTEGER"),
    "blocked": _payload("step_seconds.blocked", "INTEGER"),
    "failed": f"coalesce({_payload('step_seconds.failed', 'INTEGER')}, 0)",
    "held": f"coalesce({_payload('step_seconds.held', 'INTEGER')}, 0)",
    "ledger_size": _payload("ledger_size", "INTEGER"),
    "active_facts": _payload("active_facts", "INTEGER"),
    "ppl_before": _PPL_BEFORE,
    "ppl_after": _PPL_AFTER,
    "ppl_drift": f"({_PPL_AFTER} - {_PPL_BEFORE}) / nullif({_PPL_BEFORE}, 0)",
    "wall_seconds": _payload("seconds", "DOUBLE"),
    "refresh_mode": "e.started_payload->>'$.refresh_mode'",
    "refresh_strategy": "coalesce(e.started_payload->>'$.refresh_strategy', 'reinject')",
    "cap": _payload("cap", "INTEGER", of="e.started_payload"),
    "tau": _payload("tau", "DOUBLE", of="e.started_payload"),
    "facts_injected": "e.facts_injected",
    "facts_known": "e.facts_known",
    "step_seconds": "e.payload->'$.step_seconds'",
    "rank_left": "CAST(r.payload->'$.rank_left' AS INTEGER[])",
    "delta_norm": "CAST(r.payload->'$.delta_norm' AS DOUBLE[])",
    "min_rank_left": "list_min(CAST(r.payload->'$.rank_left' AS INTEGER[]))",
    "max_delta_norm": "list_max(CAST(r.payload->'$.delta_norm' AS DOUBLE[]))",
    "reach": "CAST(r.payload->'$.reach' AS DOUBLE[])",
    "mean_reach": "list_avg(CAST(r.payload->'$.reach' AS DOUBLE[]))",
}

_BASE = """
WITH started AS (
    SELECT cycle, max(seq) AS seq, arg_max(payload, seq) AS payload
    FROM log.events WHERE kind = 'SleepStarted' GROUP BY cycle
),
room AS (
    SELECT TRY_CAST(payload->>'$.cycle' AS INTEGER) AS cycle, arg_max(payload, seq) AS payload
    FROM log.events WHERE kind = 'ConstraintRoom' AND payload->>'$.phase' = 'sleep'
    GROUP BY TRY_CAST(payload->>'$.cycle' AS INTEGER)
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
)
"""

SQL = _BASE + "SELECT " + ",\n       ".join(f"{EXPRESSIONS[c]} AS {c}" for c in CYCLE_COLUMNS) + "\nFROM base e\nLEFT JOIN room r ON r.cycle = e.cycle\nORDER BY e.seq\n"
