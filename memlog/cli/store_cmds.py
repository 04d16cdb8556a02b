"""Store commands: ``init``, ``status``, ``log``, ``verify``, ``gc``, ``fork``."""

from __future__ import annotations

from pathlib import Path

import msgspec
import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, pin_command_threads, quiet_model_loading, store_path
from memlog.cli.output import Format, emit, progress_bars, styled, table
from memlog.core.facts import Fact
from memlog.engine.config import EngineConfig
from memlog.engine.status import status_of
from memlog.errors import MemlogError, UserError
from memlog.projections.ledger import Ledger
from memlog.replay.points import parse_point, resolve_point
from memlog.store.events import EVENT_KINDS, event_kind


def _read_state(store: Path | None):
    """Header, logged events and ledger, without loading a model."""
    from memlog.store.store import Store

    with Store.open(store_path(store), writable=False) as st:
        logged = st.log.read()
        header = st.log.header()
    return st, header, logged, Ledger.fold([(item.seq, item.event) for item in logged])


def init(
    store: Path = StoreOpt,
    model: str = typer.Option("embedded", "--model", help="embedded (SmolLM2-135M-Instruct), an HF id or a local path."),
    layers: str = typer.Option(None, "--layers", help="Edit layers, e.g. 2-9 (default: measured per model; see docs/EDIT_LAYERS.md)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="NF4 through bitsandbytes (CUDA only); edit layers stay dense."),
    cap: int = typer.Option(None, "--cap", help="Most active facts before sleep prunes (default: no count; prune once the protected keys leave under 10% of the key space free)."),
    wake: str = typer.Option("constrained", "--wake", help="Store setting: constrained (each inject protects the healthy facts' audit keys) or unconstrained (the paper's MEMIT)."),
    auto_sleep: float = typer.Option(None, "--auto-sleep", help="Store setting: sleep after an inject when pressure exceeds this."),
    degraded_by: str = typer.Option("exact", "--degraded-by", help="Store setting: the audit measure that makes a fact degraded for sleep (exact, paraphrase, chat or any)."),
    protect: str = typer.Option(None, "--protect", help="Store setting: the audit-prompt positions constrained solves hold fixed per protected fact: subject (its last token), object (also the positions that predict the object and the word boundary) or first (the subject's last token and the position that predicts the object's first token); add +paraphrases to hold the same positions in each paraphrase that contains the subject; all holds every position of the prompt and the object. Default: object with constrained wake, subject without."),
    protect_energy: float = typer.Option(1.0, "--protect-energy", help="Store setting: the share of the protected keys' (whitened) energy constrained solves hold, in (0, 1]. 1 holds their whole span exactly; below 1 only the leading directions, so fewer key dimensions per fact (see docs/MEMIT.md)."),
    norm_penalty: float = typer.Option(0.0, "--norm-penalty", help="Store setting: ρ >= 0; each MEMIT solve also charges λρ·(tr C/d)·‖ΔW‖²_F, the update's Frobenius norm (0: MEMIT as published; see docs/MEMIT.md)."),
    lam: float = typer.Option(None, "--lam", help="Store setting: λ > 0, the weight of each MEMIT solve's covariance term λ·tr(ΔW C ΔWᵀ), the expected change on reference text; it bites once comparable to a key's q = kᵀC⁻¹k, about 10³-10⁴ on the embedded model. Default: 2 × the key dimension with constrained wake (3,072 on the embedded model), 10 with --wake unconstrained (see docs/MEMIT.md)."),
    cov_samples: int = typer.Option(200, "--cov-samples", help="Store setting: reference windows (of 64 tokens) the key covariance C is estimated from; more windows estimate C's rarely used directions better (the default corpus holds about 1,700 with the embedded tokenizer; see docs/MEMIT.md)."),
    v_stop: str = typer.Option("loss", "--v-stop", help="Store setting: when v* stops a fact early: loss (its NLL + KL below MEMIT's stop loss) or most-probable (also once its object is the greedy choice in all its contexts; see docs/MEMIT.md)."),
    refresh_strategy: str = typer.Option(None, "--refresh-strategy", help="Store setting: sleep's refresh, correct (keep the edit, add a constrained correction) or reinject (revert, then solve again: the paper); default: correct with constrained wake, reinject without."),
    batch_refresh: bool = typer.Option(False, "--batch-refresh", help="Store setting: sleep refreshes a cycle's degraded facts in one constrained solve."),
    budget_action: str = typer.Option("release", "--budget-action", help="Store setting: what the null-space budget (no --cap) does with the facts its prune policy picks once the key room runs out: release (they stop being audited, held and refreshed; their edits stay in the weights, so no other fact moves) or prune (revert their edits, which breaks facts solved on top of them)."),
    ppl_bound: float = typer.Option(0.05, "--ppl-bound", help="Store setting: sleep rolls back a refresh that leaves PPL more than this fraction above the cycle's reading before it; 0 turns the check off."),
    ppl_budget: float = typer.Option(None, "--ppl-budget", help="Store setting: an inject that would leave PPL more than this fraction above the base model's (e.g. 0.01) is refused, and sleep rolls back a refresh that would, however earlier cycles moved it; default: no store-wide limit."),
    fmt: Format = FormatOpt,
):
    """Create a store: a DuckDB log, a Zarr store, and a header with the model fingerprint and config."""
    from memlog.core.memit_hparams import MemitConfig
    from memlog.core.model import ModelSpec, parse_layers
    from memlog.engine.open import init_memory

    quiet_model_loading()
    pin_command_threads()  # the covariance pass is the slow part of init
    spec = ModelSpec(model=model, dtype=dtype, device=device, load_in_4bit=load_in_4bit, keep_unquantized=tuple(parse_layers(layers)) if layers else ())
    memit = MemitConfig(lam=lam, norm_penalty=norm_penalty, v_stop=v_stop, cov_samples=cov_samples)  # checked before the model loads
    with progress_bars(True) as progress:
        engine = EngineConfig(
            cap=cap, auto_sleep=auto_sleep, degraded_by=degraded_by, wake=wake, protect_positions=protect, protect_energy=protect_energy,
            refresh_strategy=refresh_strategy, batch_refresh=batch_refresh, budget_action=budget_action, ppl_bound=ppl_bound or None, ppl_budget=ppl_budget,
        )
        mem = init_memory(store_path(store), spec, layers=parse_layers(layers) if layers else None, memit=memit, engine=engine, progress=progress)
    try:
        data = {**mem.status(), "created": True}
    finally:
        mem.close()
    emit(data, fmt, lambda c, d: c.print(f"created store {d['store']} for {d['model']} (layers {d['layers']}, seq {d['seq']})"))


def status(store: Path = StoreOpt, fmt: Format = FormatOpt):
    """Active facts, recall, degraded count, sleep pressure, cycle and head seq."""
    st, header, logged, ledger = _read_state(store)
    data = status_of(header, ledger, st.path, [item.event for item in logged])

    def render(c, d):
        rows = [[k, d[k]] for k in ("store", "model", "layers", "active_facts", "released_facts", "ledger_size", "recall", "degraded", "pressure", "cycle", "seq")]
        c.print(table("memlog status", ["", "value"], rows))
        room = d.get("room")
        if room:
            reach = room.get("reach") or [None] * len(room["layers"])
            cells = [[layer, left, "-" if r is None else f"{r:.3f}", f"{norm:.4f}"] for layer, left, r, norm in zip(room["layers"], room["rank_left"], reach, room["delta_norm"])]
            c.print(table(f"room ({room['phase']}, {room['protected']} facts' keys)", ["layer", "null-space rank left", "reach", "‖W − W_base‖/‖W_base‖"], cells))

    emit(data, fmt, render)


def log(
    store: Path = StoreOpt,
    since: str = typer.Option(None, "--since", help="Start point, e.g. seq=10 or cycle=1."),
    until: str = typer.Option(None, "--until", help="End point, e.g. seq=40, cycle=2 or time=ISO."),
    kind: list[str] = typer.Option(None, "--kind", help="Only these event kinds (repeatable)."),
    fmt: Format = FormatOpt,
):
    """List events."""
    _, _, logged, _ = _read_state(store)
    unknown = [k for k in kind or [] if k not in EVENT_KINDS]
    if unknown:
        raise UserError(f"unknown --kind {unknown}; known kinds: {', '.join(sorted(EVENT_KINDS))}")
    lo = resolve_point(parse_point(since), logged) if since else 0
    hi = resolve_point(parse_point(until), logged) if until else (logged[-1].seq if logged else 0)
    rows = [item for item in logged if lo <= item.seq <= hi and (not kind or event_kind(item.event) in kind)]
    data = [
        {"seq": item.seq, "ts": item.ts, "kind": event_kind(item.event), **msgspec.to_builtins(item.event)}
        for item in rows
    ]

    def render(c, d):
        c.print(table(None, ["seq", "time", "kind", "summary"], [[r["seq"], str(r["ts"])[:19], r["kind"], _summary(r)] for r in d]))

    emit(data, fmt, render)


def _summary(row: dict) -> str:
    parts = []
    for key in ("edit_id", "version", "consolidation_id", "phase", "cycle", "recall", "degraded", "ppl", "reason", "mode", "layer"):
        if row.get(key) is not None:
            parts.append(f"{key}={row[key]:.4g}" if isinstance(row[key], float) else f"{key}={row[key]}")
    fact = row.get("fact")
    if isinstance(fact, dict):
        parts.append(str(Fact(fact["subject"], fact["relation"], fact["object"])))
    return " ".join(parts)


def verify(store: Path = StoreOpt, device: str = DeviceOpt, fmt: Format = FormatOpt):
    """Integrity check: the hash chain, every referenced delta and its sha256, the base model's
    fingerprint, and that replay reproduces the recorded weights."""
    from memlog.core.fingerprint import is_whole_model
    from memlog.engine.open import open_memory
    from memlog.store.store import Store, verify_store

    with Store.open(store_path(store), writable=False) as st:
        problems = verify_store(st)
        recorded = st.log.header().fingerprint if not problems else ""
        chained = st.log.chained()
    notes = [] if chained else ["the log has no hash chain yet (it was written by an older memlog); its next write adds one"]
    if recorded and not is_whole_model(recorded):
        notes.append(
            "this store records the older, narrower base-model fingerprint (the edit layers' MLP output weights "
            "only); changes to other weights of the base model are not detected"
        )
    if not problems:
        quiet_model_loading()
        try:
            mem = open_memory(store_path(store), writable=False, device=device)
        except MemlogError as exc:
            problems.append(str(exc))
        else:
            try:
                sha = mem.project()
                expected = mem.ledger.last_weights_sha256
                if expected and sha != expected:
                    problems.append(f"replay of the log to seq {mem.head_seq} does not reproduce the recorded weights (sha256 {sha[:12]}… ≠ {expected[:12]}…)")
            finally:
                mem.close()
    scope = "model" if is_whole_model(recorded) else "edit-layers" if recorded else None
    data = {"ok": not problems, "problems": problems, "fingerprint_scope": scope, "notes": notes}

    def render(c, d):
        if d["ok"]:
            c.print(styled(("ok", "green"), ": store verified"))
        for problem in d["problems"]:
            c.print(styled(("problem", "red"), f": {problem}"))
        for note in d["notes"]:
            c.print(styled(("note", "yellow"), f": {note}"))

    emit(data, fmt, render)
    if problems:
        raise typer.Exit(2)


def gc(store: Path = StoreOpt, fmt: Format = FormatOpt):
    """Remove orphan deltas (written by a command that crashed before its event was committed)."""
    from memlog.store.store import Store, gc as store_gc

    with Store.open(store_path(store), writable=True) as st:
        removed = store_gc(st)
    emit({"removed": removed, "count": len(removed)}, fmt, lambda c, d: c.print(f"removed {d['count']} orphan blob(s)"))


def fork(
    dest: Path = typer.Argument(..., help="The new store's directory (must not exist, or be empty)."),
    until: str = typer.Option(..., "--until", help="cycle=N, seq=N, time=ISO or head: the last event the fork keeps."),
    store: Path = StoreOpt,
    fmt: Format = FormatOpt,
):
    """A new store holding this store's log up to a point, with its deltas (the source is only read)."""
    from memlog.store.fork import fork_store

    point = parse_point(until)  # a malformed point fails before the store is read
    data = fork_store(store_path(store), dest, lambda logged: resolve_point(point, logged))
    emit(data, fmt, lambda c, d: c.print(f"forked {d['source']} at seq {d['seq']} into {d['store']} ({d['blobs']} delta blob(s))"))


def register(app: typer.Typer) -> None:
    for fn in (init, status, log, verify, gc, fork):
        app.command(name=fn.__name__)(fn)
