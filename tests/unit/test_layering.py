"""The package's import graph (parsed with `ast`, imports inside functions included) has no cycle and no import
that goes up the layer order: base -> models -> saliency -> decoding -> pipeline -> run -> ... -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import saliency_lab

ROOT = Path(saliency_lab.__file__).resolve().parent

# Rank of every top-level module or subpackage of saliency_lab; a module may import only modules of its own rank
# or lower. Modules inside one package may import each other (the cycle check still applies to them).
RANKS = {
    # base: no model, no torch-level logic
    "version": 0,
    "errors": 0,
    "config": 0,
    "jsonl": 0,
    "seeding": 0,
    "progress": 0,
    "manifest": 0,
    "store": 0,
    "assets": 0,
    "resources": 0,
    "threads": 0,  # the thread count every computing command applies (torch, DuckDB, Polars)
    "launch": 0,  # rank and world size from torchrun / SLURM for --shard auto  # finds the shipped queries/ and reports/ folders
    "models": 1,
    "saliency": 2,
    "decoding": 3,
    "pipeline": 4,  # the per-sample capture pipeline
    "run": 5,
    "labels": 6,  # read runs (store) and manifests
    "testing": 6,  # synthetic runs for tests, bench and docs (writes through store)
    "world": 6,  # the bundled scene world: trains/evaluates a model, writes manifests
    "analysis": 7,  # reads labelled runs
    "report": 8,  # reads analyses
    "demo": 9,  # the whole pipeline end to end
    "demo_text": 9,  # the demo's text world on the real SmolLM2 model
    "demo_worlds": 9,  # the demo's world registry
    "__init__": 9,  # the package facade (saliency_lab.capture -> run, lazily)
    "__main__": 10,
    "cli": 10,  # the top: the library never imports the CLI
}

# Upward edges another branch is removing; each names the branch that owns the fix (the integrator drops it).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (None outside saliency_lab)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def _imports(mod: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every saliency_lab module `mod` imports, at any depth of its code (functions, TYPE_CHECKING blocks
    included: a type-only import still ties the modules together)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub; `from mod import name` imports mod.
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        for n in names:
            target = _resolve(n, modules)
            if target is not None and target != mod:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _rank(mod: str) -> int:
    parts = mod.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    if key not in RANKS:
        raise AssertionError(f"{mod}: give saliency_lab.{key} a rank in RANKS of {__file__}")
    return RANKS[key]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_parser_sees_imports_inside_functions_and_relative_ones():
    modules = {"saliency_lab.a", "saliency_lab.b", "saliency_lab.b.c", "saliency_lab.d"}
    src = "import os\nfrom . import d\ndef f():\n    from saliency_lab.b import c\n    import saliency_lab.a.x\n"
    path = ROOT / "_probe_not_written.py"
    tree_mods = dict.fromkeys(modules, path)
    mod = "saliency_lab.probe"
    orig = Path.read_text
    try:
        Path.read_text = lambda self, encoding=None: src  # type: ignore[method-assign]
        got = _imports(mod, path, tree_mods)
    finally:
        Path.read_text = orig  # type: ignore[method-assign]
    assert got == {"saliency_lab.d", "saliency_lab.b.c", "saliency_lab.a"}
    assert _cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_every_module_has_a_rank():
    for mod in _graph():
        _rank(mod)


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_upward_import():
    graph = _graph()
    bad = sorted(
        f"{a} (rank {_rank(a)}) imports {b} (rank {_rank(b)})"
        for a, targets in graph.items()
        for b in targets
        if _rank(b) > _rank(a) and (a, b) not in KNOWN_EXCEPTIONS
    )
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_known_exceptions_are_still_real():
    """An exception whose edge is gone must be deleted here (it would hide a new upward import)."""
    graph = _graph()
    gone = [f"{a} -> {b}" for a, b in sorted(KNOWN_EXCEPTIONS) if b not in graph.get(a, set())]
    assert not gone, gone


def test_the_library_never_imports_the_cli():
    graph = _graph()
    users = sorted(
        a
        for a, t in graph.items()
        if not a.startswith(("saliency_lab.cli", "saliency_lab.__main__"))
        and any(b.startswith("saliency_lab.cli") for b in t)
        and a != "saliency_lab"
    )
    allowed = {a for a, _ in KNOWN_EXCEPTIONS}
    assert set(users) <= allowed, users
