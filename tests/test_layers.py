"""Imports respect the layers: production code never imports the numpy oracle, which
must stay an independent transcription of docs/model.md for the agreement tests to
compare two implementations rather than one with itself."""

from __future__ import annotations

import ast
from pathlib import Path

import scoresvc
from scoresvc import reference

(PACKAGE,) = (Path(p) for p in scoresvc.__path__)  # a namespace package: no __init__
ORACLE = reference.__name__


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, relative imports
    resolved; ``from a import b`` counts as importing ``a`` and ``a.b`` (b may be a
    module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _imports_of(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _imported(path.read_text(), package)


def _production_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if _module_name(p) != ORACLE]


def test_the_import_scan_sees_every_form_of_importing_the_oracle():
    package, _, name = ORACLE.rpartition(".")
    forms = [
        f"from .{name} import compute",
        f"from . import {name}",
        f"from {package} import {name}",
        f"import {ORACLE}",
        f"from {ORACLE} import _log_scale",
        f"def later():\n    from .{name} import compute",
    ]
    for form in forms:
        assert ORACLE in _imported(form, package), form
    assert ORACLE not in _imported("from .scoring import log_scale", package)


def test_no_production_module_imports_the_oracle():
    modules = _production_modules()
    assert len(modules) > 10  # the scan found the package
    offenders = [str(p.relative_to(PACKAGE)) for p in modules if ORACLE in _imports_of(p)]
    assert offenders == []
