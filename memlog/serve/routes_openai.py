"""``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` in OpenAI's wire format.

Both completion routes answer from the serving snapshot (the live memory as of the last
committed event). With ``"stream": true`` they send server-sent events, one chunk per piece
of new text, then ``data: [DONE]``; the generation runs in its own thread and hands pieces
over a queue, so a client that goes away never leaves the snapshot locked. The snapshot's
seq is reported as ``system_fingerprint`` (``memlog-seq-N``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from memlog.serve.deps import ServerState, check_model
from memlog.serve.generate import Piece, chat_ids, generate, prompt_ids
from memlog.serve.schemas import ChatRequest, CompletionRequest

router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.memlog


@router.get("/v1/models")
def models(request: Request) -> dict:
    state = _state(request)
    return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": state.started, "owned_by": "memlog"}]}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _collect(pieces: Iterator[Piece]) -> tuple[str, str, int]:
    text, reason, n = [], "stop", 0
    for piece in pieces:
        text.append(piece.text)
        if piece.finish_reason is not None:
            reason, n = piece.finish_reason, piece.completion_tokens
    return "".join(text), reason, n


def _sse(pieces: Iterator[Piece], chunk: Callable[[Piece], dict], first: dict | None = None) -> StreamingResponse:
    """Stream ``pieces`` as server-sent events; the generation runs in a thread of its own."""
    handoff: queue.Queue = queue.Queue()

    def produce() -> None:
        try:
            for piece in pieces:
                handoff.put(piece)
        except Exception as exc:  # reported to the client as a final error event
            handoff.put(exc)
        handoff.put(None)

    threading.Thread(target=produce, name="memlog-generate", daemon=True).start()

    async def events():
        if first is not None:
            yield f"data: {json.dumps(first)}\n\n"
        while True:
            item = await anyio.to_thread.run_sync(handoff.get)
            if item is None:
                break
            if isinstance(item, Exception):
                yield f"data: {json.dumps({'error': {'message': str(item), 'type': 'server_error', 'param': None, 'code': None}})}\n\n"
                break
            yield f"data: {json.dumps(chunk(item))}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.post("/v1/completions")
def completions(body: CompletionRequest, request: Request):
    state = _state(request)
    check_model(state, body.model)
    snapshot = state.snapshot
    ids = prompt_ids(snapshot.lm, body.prompt)
    head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()), "model": state.model_name, "system_fingerprint": f"memlog-seq-{snapshot.seq}"}
    pieces = generate(snapshot, ids, body.sampling())
    if body.stream:
        return _sse(pieces, lambda p: {**head, "choices": [{"text": p.text, "index": 0, "logprobs": None, "finish_reason": p.finish_reason}]})
    text, reason, n = _collect(pieces)
    return {**head, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}], "usage": _usage(len(ids), n)}


@router.post("/v1/chat/completions")
def chat_completions(body: ChatRequest, request: Request):
    state = _state(request)
    check_model(state, body.model)
    snapshot = state.snapshot
    ids = chat_ids(snapshot.lm, [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages], body.continue_final_message)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()), "model": state.model_name, "system_fingerprint": f"memlog-seq-{snapshot.seq}"}
    pieces = generate(snapshot, ids, body.sampling())
    if body.stream:
        chunk_head = {**head, "object": "chat.completion.chunk"}
        first = {**chunk_head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        return _sse(
            pieces,
            lambda p: {**chunk_head, "choices": [{"index": 0, "delta": {"content": p.text} if p.text else {}, "finish_reason": p.finish_reason}]},
            first,
        )
    text, reason, n = _collect(pieces)
    message = {"role": "assistant", "content": text}
    return {**head, "choices": [{"index": 0, "message": message, "finish_reason": reason}], "usage": _usage(len(ids), n)}
