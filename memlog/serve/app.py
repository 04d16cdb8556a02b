"""The FastAPI application: state, authentication and error bodies; routes live beside it.

``create_app(state)`` wires the OpenAI routes (``routes_openai``) and the memory routes
(``routes_memory``) over a ``ServerState`` (``deps``). Every error is a JSON body in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request (validation,
a bad fact, a bad point), 401 for a missing or wrong API key on a write, 404 for an unknown
model, 409 when the writer is busy, 423 when the store is locked by another process, 500
for an integrity problem. Writes check the API key when one is set; the CLI refuses to
listen beyond localhost without one.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memlog.errors import IntegrityError, MemlogError, StoreLockedError
from memlog.serve import routes_memory, routes_openai
from memlog.serve.deps import ApiError, ServerState
from memlog.serve.writer import BusyError


def error_body(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": code}})


def _status_of(exc: MemlogError) -> tuple[int, str]:
    if isinstance(exc, BusyError):
        return 409, "busy"
    if isinstance(exc, StoreLockedError):
        return 423, "store_locked"
    if isinstance(exc, IntegrityError):
        return 500, "integrity_error"
    return 400, "invalid_request_error"


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return error_body(exc.status, exc.message, exc.kind, exc.code, exc.param)

    @app.exception_handler(MemlogError)
    async def _memlog(_: Request, exc: MemlogError):
        status, kind = _status_of(exc)
        return error_body(status, str(exc), kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_body(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", "invalid_request_error", param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_body(exc.status_code, str(exc.detail), "invalid_request_error")


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="memlog", description="An OpenAI-compatible server over one memlog store.")
    state.started = state.started or int(time.time())
    app.state.memlog = state

    @app.middleware("http")
    async def _activity(request: Request, call_next):
        state.writer.last_activity = time.monotonic()
        return await call_next(request)

    _install_errors(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_memory.router)
    return app
