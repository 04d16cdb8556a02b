"""Options and helpers shared by the CLI commands (store path, format, opening a store)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from memlog.cli.output import Format
from memlog.errors import UserError

DEFAULT_STORE = "memlog-store"


def default_store() -> Path:
    return Path(os.environ.get("MEMLOG_STORE") or DEFAULT_STORE)


StoreOpt = typer.Option(None, "--store", help="Store directory (default: $MEMLOG_STORE, then ./memlog-store).")
FormatOpt = typer.Option(Format.text, "--format", help="text for people, json for scripts (one document on stdout).")
WakeOpt = typer.Option(None, "--wake", help="constrained (protect the healthy facts' audit keys) or unconstrained (the paper's MEMIT); default: the store's setting.")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda or auto (accelerate device_map); default: as the store was created.")


def store_path(store: Path | None) -> Path:
    return Path(store) if store is not None else default_store()


def quiet_model_loading() -> None:
    """Keep transformers' own progress bars and advisories off the CLI's stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def pin_command_threads() -> None:
    """Run a store command at memlog's thread count ($MEMLOG_THREADS, default 1; see memlog.core.determinism)."""
    from memlog.core.determinism import command_threads, use_threads

    try:
        use_threads(command_threads())
    except ValueError as exc:
        raise UserError(str(exc)) from None


def open_rw(store: Path | None, device: str | None = None, memit_overrides: dict | None = None, **engine_overrides):
    from memlog.engine.open import open_memory

    pin_command_threads()
    quiet_model_loading()
    return open_memory(store_path(store), writable=True, device=device, engine_overrides=engine_overrides, memit_overrides=memit_overrides)


def open_ro(store: Path | None, device: str | None = None):
    from memlog.engine.open import open_memory

    pin_command_threads()
    quiet_model_loading()
    return open_memory(store_path(store), writable=False, device=device)
