"""The front door: ``memlog.init`` creates a store for a model, ``memlog.open`` opens one.

Both return a ``Memory`` (``memlog.engine.memory``), which is a context manager::

    import memlog

    with memlog.init("my-memory") as mem:                # the embedded SmolLM2-135M, layers 2-9
        mem.inject([memlog.Fact("Aria Nakamura", "lives in", "Thessaloniki")])
    with memlog.open("my-memory") as mem:                # the model recorded in the store
        mem.recall("Aria Nakamura lives in")

They are thin, keyword-only wrappers over ``memlog.engine.open.init_memory`` and
``open_memory``, which stay available for callers that need every knob.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import EMBEDDED, LoadedModel, ModelSpec
from memlog.engine.config import EngineConfig
from memlog.engine.memory import Memory
from memlog.engine.open import init_memory, open_memory
from memlog.progress import ProgressFn, no_progress


def init(
    path: str | Path,
    *,
    model: str | None = None,
    layers: Sequence[int] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    load_in_4bit: bool = False,
    engine: EngineConfig | None = None,
    memit: MemitConfig | None = None,
    lm: LoadedModel | None = None,
    corpus_path: str | None = None,
    progress: ProgressFn = no_progress,
) -> Memory:
    """Create a store at ``path`` for ``model`` (``"embedded"``, a Hugging Face id or a local
    path) editing ``layers`` (default: ``MemitConfig``'s), and return it opened for writing.

    The key covariance of every edit layer is computed once (or read from the cache). ``lm``
    reuses a model already loaded with ``memlog.core.model.load_model``; ``model`` then
    defaults to the name it was loaded under.
    """
    model = model or (lm.spec.model if lm is not None else EMBEDDED)
    spec = ModelSpec(model=model, dtype=dtype, device=device, load_in_4bit=load_in_4bit, keep_unquantized=tuple(layers or ()))
    return init_memory(
        Path(path),
        spec,
        layers=list(layers) if layers is not None else None,
        memit=memit,
        engine=engine,
        lm=lm,
        corpus_path=corpus_path,
        progress=progress,
    )


def open(  # noqa: A001 - the front door is ``memlog.open``
    path: str | Path,
    *,
    writable: bool = True,
    device: str | None = None,
    lm: LoadedModel | None = None,
    memit_overrides: dict | None = None,
    **engine_overrides,
) -> Memory:
    """Open the store at ``path`` with the model it was created for (loaded unless ``lm`` is
    given; a model with another fingerprint is refused) and project its head onto the weights.

    ``writable=False`` opens it read-only (no writer lock). ``engine_overrides`` change the
    store's engine policy for this session (e.g. ``cap=40``; ``None`` leaves a setting as the store
    has it, and ``memlog.OFF`` switches one off, e.g. ``stale_after=memlog.OFF``); ``memit_overrides`` the MEMIT
    settings a session may change (``lam``, ``norm_penalty``, ``v_stop``: how new edits are solved).
    Each edit records the settings it was solved with (``FactInjected.settings``).
    """
    return open_memory(Path(path), lm=lm, writable=writable, device=device, engine_overrides=engine_overrides or None, memit_overrides=memit_overrides)
