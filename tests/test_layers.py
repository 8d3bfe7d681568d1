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


# What each folder's modules may import of the package (docs/architecture.md): every
# arrow points down, so the folders read as layers.
MAY_IMPORT = {
    "core": {"core", "_core"},
    "storage": {"storage", "core", "_core"},
    "service": {"service", "storage", "core", "_core", "_wire", "v1"},
    "batch": {"batch", "storage", "core", "_core"},
    # The clients speak the wire (stubs, convert) in the domain's words; no engine.
    "client": {"client", "service", "core", "v1"},
}


def _package_imports(path: Path) -> set[str]:
    """The top-level parts of the package (``core``, ``_core``, ...) a module imports."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _package_imports_in(path.read_text(), package)


def _package_imports_in(source: str, package: str) -> set[str]:
    root = PACKAGE.name
    found = set()
    for name in _imported(source, package):
        parts = name.split(".")
        if parts[0] == root and len(parts) > 1:
            found.add(parts[1])
    return found


def test_each_folder_imports_only_the_layers_below_it():
    offenders = {}
    for folder, allowed in MAY_IMPORT.items():
        modules = sorted((PACKAGE / folder).glob("*.py"))
        assert modules, folder
        for path in modules:
            extra = _package_imports(path) - allowed - {"__init__"}
            if extra:
                offenders[f"{folder}/{path.name}"] = sorted(extra)
    assert offenders == {}


def test_the_layer_check_sees_an_import_from_above(tmp_path):
    module = tmp_path / "engine.py"
    module.write_text("from ..service import servicer\nfrom .. import _core\n")
    imported = _package_imports_in(module.read_text(), f"{PACKAGE.name}.core")
    assert imported == {"service", "_core"}
