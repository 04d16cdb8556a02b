"""Start and stop the server: open the store as its writer, build the snapshot and the app, run uvicorn.

``serve(...)`` refuses to listen beyond localhost without an API key (``--api-key`` or
``$MEMLOG_API_KEY``), holds the store's writer lock until it stops, and on shutdown stops the
automatic sleep and the snapshot watcher, waits for a running write to finish (up to
``wait_s``) and releases the store.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

import uvicorn

from memlog.errors import UserError
from memlog.serve.app import create_app
from memlog.serve.deps import ServerState
from memlog.serve.snapshot import ServingSnapshot
from memlog.serve.writer import AutoSleep, MemoryWriter

LOCAL_NAMES = {"localhost", "ip6-localhost"}


def is_local(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port} is out of range 1-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None


def serve(open_writer, host: str, port: int, api_key: str | None, model_name: str | None, sleep_when: float | None, sleep_idle: float | None, wait_s: float = 300.0) -> None:
    """Run the server until interrupted; ``open_writer()`` returns the writable ``Memory``."""
    if not is_local(host) and not api_key:
        raise UserError(f"--host {host} listens beyond localhost: writes need a token; pass --api-key or set MEMLOG_API_KEY")
    check_port(host, port)
    mem = open_writer()
    snapshot = writer = autosleep = None
    try:
        snapshot = ServingSnapshot(mem)
        writer = MemoryWriter(mem, snapshot, wait_s=wait_s)
        autosleep = AutoSleep(writer, sleep_when, sleep_idle)
        name = model_name or f"memlog:{mem.store.path.name}"
        state = ServerState(writer=writer, snapshot=snapshot, model_name=name, api_key=api_key or None, autosleep=autosleep)
        print(f"memlog serve: {mem.store.path} as model {name!r} on http://{host}:{port}/v1 (seq {snapshot.seq})", file=sys.stderr, flush=True)
        uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if autosleep is not None:
            autosleep.close()
        if snapshot is not None:
            snapshot.close()
        if writer is None or writer.lock.acquire(timeout=wait_s):
            mem.close()
