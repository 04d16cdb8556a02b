"""The paper's reported numbers (Baranov 2026, Llama-3.1-8B, layers 12-19), for side-by-side tables.

Immutable tuples copied from Tables 3, 4, 6 and 7 of ``paper.txt``; nothing here is measured.
"""

from __future__ import annotations

# Table 3: injection trajectory (facts, recall, degraded, PPL).
TABLE3_WAKE: tuple[tuple[int, float, int, float], ...] = (
    (1, 1.000, 0, 5.677),
    (5, 0.800, 1, 5.646),
    (10, 0.900, 1, 5.634),
    (13, 0.923, 1, 5.643),
    (14, 0.571, 6, 5.655),
    (20, 0.550, 9, 5.645),
    (25, 0.440, 14, 5.637),
    (30, 0.400, 18, 5.626),
)
TABLE3_WAKE_CAPACITY = 13
TABLE3_TIPPING_POINT = 14

# Table 4: sleep convergence (config, initial recall, Phase A cycles, Phase A final, Phase B cycles, Phase B result).
TABLE4_CONVERGENCE: tuple[tuple[str, float, int, float, int | None, str], ...] = (
    ("8B, 14 facts", 0.571, 4, 1.000, 2, "Converged"),
    ("8B, 30 facts", 0.400, 4, 1.000, None, "Diverged"),
    ("70B, 7 facts", 0.571, 2, 1.000, 0, "No sleep needed"),
)

# Table 6: the death spiral, 8B Phase B of 30+5 (cycle, recall, degraded, refreshed, pruned); cycle 0 = post-injection.
TABLE6_SPIRAL: tuple[tuple[int, float, int, int | None, int | None], ...] = (
    (0, 0.914, 3, None, None),
    (1, 0.971, 1, 3, 0),
    (2, 0.971, 1, 1, 3),
    (3, 0.914, 3, 0, 3),
    (4, 0.857, 5, 0, 3),
    (5, 0.829, 6, 0, 3),
    (6, 0.714, 10, 0, 3),
    (7, 0.657, 12, 1, 3),
    (8, 0.657, 12, 0, 3),
    (9, 0.571, 15, 0, 3),
    (10, 0.457, 19, 1, 3),
)

# Table 7: perplexity (config, baseline, post-injection, post-sleep, drift).
TABLE7_PPL: tuple[tuple[str, float, float, float, str], ...] = (
    ("8B, 14 facts", 5.661, 5.655, 5.688, "+0.5%"),
    ("8B, 30 facts", 5.661, 5.626, 5.843, "+3.2% (peak, Phase A cycle 3; final 5.813)"),
    ("70B, 7+3 facts", 5.096, 5.094, 5.105, "+0.2%"),
)


def table3_row(facts: int) -> tuple[int, float, int, float] | None:
    """The paper's Table 3 row at ``facts`` injected facts, if it reports one."""
    for row in TABLE3_WAKE:
        if row[0] == facts:
            return row
    return None
