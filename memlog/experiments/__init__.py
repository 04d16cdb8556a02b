"""The paper's protocols as functions over a ``Memory`` (Baranov 2026, §4.3-§5.6).

- ``wake``: a wave of injections, one fact at a time, audit after each, PPL on a schedule;
- ``wake_capacity``: the wake trajectory and its thresholds (Table 3);
- ``phase_ab``: two-phase damage-recovery with sleep until converged (Tables 4, 6, 7);
- ``runner``: seed everything, create a fresh store and run a protocol into it;
- ``seeding``: seeds, thread count and deterministic algorithms;
- ``checks``: compare two runs' event streams and replay a store at every cycle;
- ``paper``: the paper's reported numbers; ``markdown``: tables beside them;
- ``demo``: the ``memlog demo`` protocol (wake until recall drops, sleep, time travel, report).

``memlog experiment NAME`` (``memlog.cli.experiment_cmds``) is the command-line front.
"""
