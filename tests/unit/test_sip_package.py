"""The shape of gateway/sip/ (issue 15): no import circle among its modules, counting those
under `if TYPE_CHECKING` (refresh.py once imported the UAS that imports it), and no module,
class or function past the sizes a newcomer can hold in their head."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.sip

PACKAGE = Path(gateway.sip.__file__).parent
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 600, 300, 60


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def _siblings(tree: ast.Module, names: set[str]) -> set[str]:
    """Sibling modules imported anywhere in the module, TYPE_CHECKING blocks included."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gateway.sip."):
            found.add((node.module or "").split(".")[2])
    return found & names


def test_the_sip_modules_import_each_other_without_a_circle() -> None:
    trees = _trees()
    pending = {name: _siblings(tree, set(trees)) - {name} for name, tree in trees.items()}
    while pending:  # peel off modules whose imports are all done; a circle leaves some behind
        ready = {name for name, deps in pending.items() if not deps & set(pending)}
        assert ready, f"import circle among {sorted(pending)}"
        for name in ready:
            del pending[name]


def test_no_sip_module_class_or_function_is_too_long() -> None:
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            limit = (
                MAX_CLASS
                if isinstance(node, ast.ClassDef)
                else MAX_FUNCTION
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                else None
            )
            if limit is not None and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    too_long.append(f"{path.name}: {node.name} {length} lines")
    assert not too_long, too_long
