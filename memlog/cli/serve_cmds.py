"""``serve``: an OpenAI-compatible HTTP server over the store (docs/SERVER.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, StoreOpt, open_rw
from memlog.serve.writer import parse_duration, parse_sleep_when


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond localhost an API key is required."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", help="Token required for writes (default: $MEMLOG_API_KEY)."),
    model_name: str = typer.Option(None, "--model-name", help="The model id clients ask for (default: memlog:<store dir name>)."),
    sleep_when: str = typer.Option(None, "--sleep-when", help="Sleep automatically when the pressure exceeds a threshold, e.g. 'pressure>0.2'."),
    sleep_idle: str = typer.Option(None, "--sleep-idle", help="Sleep automatically after this long without requests, e.g. 10m."),
    max_cycles: int = typer.Option(None, "--max-cycles", help="Cycles a sleep until converged may take (default: the store's, 10)."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
):
    """Serve the live memory over HTTP: OpenAI completions and chat, plus inject, sleep, status and replay."""
    from memlog.serve.server import serve as run_server

    pressure = parse_sleep_when(sleep_when) if sleep_when is not None else None
    idle = parse_duration(sleep_idle) if sleep_idle is not None else None
    key = api_key if api_key is not None else os.environ.get("MEMLOG_API_KEY")
    run_server(lambda: open_rw(store, device, max_cycles=max_cycles), host, port, key, model_name, pressure, idle)


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)
