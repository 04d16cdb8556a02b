"""What the routes share: the server's state, the API error type, the write-token and model checks."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from memlog.serve.writer import AutoSleep, MemoryWriter


@dataclass
class ServerState:
    writer: MemoryWriter
    snapshot: object
    model_name: str
    api_key: str | None
    autosleep: AutoSleep | None = None
    started: int = 0


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param


def require_write_token(request: Request) -> None:
    """Refuse a write without the right API key (``Authorization: Bearer KEY`` or ``X-API-Key``)."""
    state: ServerState = request.app.state.memlog
    if state.api_key is None:
        return
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not token or not hmac.compare_digest(token.encode(), state.api_key.encode()):
        raise ApiError(401, "missing or wrong API key for a write; send Authorization: Bearer KEY", "authentication_error", "invalid_api_key")


def check_model(state: ServerState, model: str) -> None:
    if model != state.model_name:
        raise ApiError(404, f"unknown model {model!r}; this server serves {state.model_name!r} (see /v1/models)", code="model_not_found", param="model")
