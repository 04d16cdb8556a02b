"""``memlog serve``: an OpenAI-compatible HTTP server over one store (FastAPI on uvicorn).

Reads (completions, chat, fact lists, status, replay) are answered from a serving snapshot
of the weights that is swapped after every committed unit of events; writes (inject, sleep)
run one at a time on the memory that holds the store's writer lock. See docs/SERVER.md.
"""
