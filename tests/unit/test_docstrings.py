"""Every public module-level function and class of saliency_lab, and every public method of a public class, has a
docstring (parsed with `ast`, so nothing is imported). Private means a leading underscore on the name or on a
module/package in its path (`__init__.py` is public)."""

from __future__ import annotations

import ast
from pathlib import Path

import saliency_lab

ROOT = Path(saliency_lab.__file__).resolve().parent
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def missing_docstrings(source: str) -> list[str]:
    """`line: name` of every public definition in `source` without a docstring."""
    out = []
    for node in ast.parse(source).body:
        if not isinstance(node, _DEFS) or node.name.startswith("_"):
            continue
        if ast.get_docstring(node) is None:
            out.append(f"{node.lineno}: {node.name}")
        if isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, _DEFS) and not m.name.startswith("_") and ast.get_docstring(m) is None:
                    out.append(f"{m.lineno}: {node.name}.{m.name}")
    return out


def _public_modules() -> list[Path]:
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if not any(part.startswith("_") and part != "__init__.py" for part in p.relative_to(ROOT).parts)
    ]


def test_checker_finds_what_lacks_a_docstring() -> None:
    src = '''
def f(): pass
def _g(): pass
class C:
    """doc"""
    def m(self): pass
    def _p(self): pass
    @property
    def q(self):
        """doc"""
class _Hidden:
    def m(self): pass
async def h():
    """doc"""
'''
    assert missing_docstrings(src) == ["2: f", "6: C.m"]


def test_every_public_definition_has_a_docstring() -> None:
    modules = _public_modules()
    assert len(modules) > 50  # the walk found the package
    missing = [
        f"{p.relative_to(ROOT.parent)}:{item}"
        for p in modules
        for item in missing_docstrings(p.read_text(encoding="utf-8"))
    ]
    assert not missing, "public definitions without a docstring:\n" + "\n".join(missing)
