"""The package's import graph, read with ``ast``: no cycles, and no deferred imports that hide one.

Every ``import`` statement under ``memlog/`` counts: module level, inside functions and inside
``if TYPE_CHECKING:`` blocks. A function-local import is allowed only

- of an optional (or version-dependent) third-party module listed in ``OPTIONAL_IMPORTS``, or
- in a CLI command module (``memlog/cli/``), which defers the engine so that ``--help`` and the
  store-only commands start without importing torch (checked below in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "memlog"

# Third-party modules that may be imported inside a function, and why.
OPTIONAL_IMPORTS = {
    "bitsandbytes": "optional: only needed for 4-bit loading",
    "transformers": "imported when a model is loaded, so the store and CLI start without it",
    "pydoc_data": "the default corpus; an optional part of the standard library on some distributions",
}

# Import cycles that remain, each a sorted tuple of module names. Empty: there are none. The
# list may only shrink; a listed cycle that no longer exists fails the test too.
KNOWN_CYCLES: list[tuple[str, ...]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str):
    """(target module, is function-local) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                yield base, in_function
                for alias in child.names:
                    yield f"{base}.{alias.name}", in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(tree, False)


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _graph():
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    local: list[tuple[str, str]] = []
    for name, path in modules.items():
        for target, in_function in _imports(path, name):
            internal = target.split(".")[0] == "memlog"
            resolved = _resolve(target, modules) if internal else None
            if resolved and resolved != name:
                edges[name].add(resolved)
            if in_function and (resolved or not internal):
                local.append((name, resolved or target))
    return edges, local


def _cycles(edges: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(tuple(sorted(component)))
    return sorted(found)


def test_the_walk_sees_every_kind_of_import():
    edges, local = _graph()
    assert "memlog.core.memit_hparams" in edges["memlog.core.memit"]  # module level
    assert ("memlog.cli.common", "memlog.engine.open") in local  # inside a function
    assert "memlog.engine.editor" in edges["memlog.engine.memory"]  # inside ``if TYPE_CHECKING:``
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph()[0])
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    gone = [c for c in KNOWN_CYCLES if c not in cycles]
    assert not new, f"import cycles: {new}"
    assert not gone, f"these cycles are gone; remove them from KNOWN_CYCLES: {gone}"


def test_function_local_imports_only_where_allowed():
    _, local = _graph()
    bad = [
        (module, target)
        for module, target in local
        if not module.startswith("memlog.cli.") and target.split(".")[0] not in OPTIONAL_IMPORTS
    ]
    assert not bad, f"function-local imports outside the CLI that are not optional dependencies: {bad}"


def test_the_memit_steps_do_not_depend_on_memit():
    edges, _ = _graph()
    for step in ("memlog.core.keys", "memlog.core.vstar", "memlog.core.covariance", "memlog.core.memit_hparams"):
        assert "memlog.core.memit" not in edges[step], step
    assert edges["memlog.core.memit_hparams"] <= {"memlog.errors"}


# The packages a package may import (besides itself): the layers only point downwards.
LAYERS = {
    "errors": set(),
    "progress": set(),
    "facttext": set(),
    "core": {"errors", "progress", "facttext"},
    "store": {"errors", "facttext"},
    "projections": {"core", "store", "errors", "progress"},
    "replay": {"projections", "core", "store", "errors", "progress"},
    "analytics": {"projections", "replay", "store", "errors", "progress"},
    "engine": {"projections", "replay", "core", "store", "errors", "progress"},
    "experiments": {"engine", "analytics", "projections", "replay", "core", "store", "errors", "progress"},
    "api": {"engine", "core", "errors", "progress"},
    "adapters": {"engine", "replay", "projections", "core", "store", "errors", "progress"},
    "serve": {"adapters", "engine", "replay", "projections", "core", "store", "errors", "progress"},
}


def test_layers():
    edges, _ = _graph()
    for name, targets in edges.items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in LAYERS:
            continue  # memlog/__init__.py and the CLI may import anything
        used = {t.split(".")[1] for t in targets if len(t.split(".")) > 1} - {parts[1]}
        assert used <= LAYERS[parts[1]], f"{name} imports {sorted(used - LAYERS[parts[1]])}"


@pytest.mark.parametrize("module", ["memlog", "memlog.store.store", "memlog.cli.app", "memlog.analytics.views"])
def test_light_imports_do_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["False", "False"], (module, out.stdout, out.stderr)


def test_the_cli_defers_only_modules_its_start_does_not_load():
    """A function-local import in the CLI is there to keep torch, DuckDB, Zarr and matplotlib out
    of ``memlog --help``: one of a module that starting the CLI loads anyway belongs at the top."""
    _, local = _graph()
    deferred = sorted({target for module, target in local if module.startswith("memlog.cli.") and target.startswith("memlog")})
    code = "import sys, memlog.cli.app; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})
    loaded = set(out.stdout.split())
    assert deferred, "the walk should see the CLI's deferred imports"
    assert not [t for t in deferred if t in loaded], "deferred in the CLI but loaded at its start anyway"
    assert not {"torch", "duckdb", "zarr", "matplotlib", "transformers"} & loaded
