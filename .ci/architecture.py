"""Architecture checks run in CI (`make arch`): layer contracts, import circles, private access.

1. import-linter contracts from pyproject.toml (`[tool.importlinter]`): which layer may import
   which, and no import circle between sibling modules or packages (`acyclic_siblings`, which
   counts `if TYPE_CHECKING:` imports too) — the same as running `lint-imports` in the
   repository.
2. No class reaches into another object's private members: an attribute `x._name` (not a
   dunder) is allowed only on `self`, `cls`, `super()`, a class defined in the same file, or a
   third-party module (e.g. a kernel under `torch.ops`). A rare justified exception carries the
   comment `# private-ok: <reason>` on its line.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWNERS = {"self", "cls"}


def lint_imports() -> int:
    os.chdir(ROOT)  # import-linter puts the working directory first on sys.path
    from importlinter.cli import lint_imports as run

    return run(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)


def private_accesses(path: Path) -> list[str]:
    """`file:line: x._name` for every access to another object's private member."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    allowed = OWNERS | _own_classes(tree) | _external_modules(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        if _is_owner(node.value, allowed) or "private-ok:" in lines[node.lineno - 1]:
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_classes(tree: ast.Module) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def _external_modules(tree: ast.Module) -> set[str]:
    """Names bound to third-party modules (`import torch`, `from torch import nn`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {
                (a.asname or a.name).split(".")[0]
                for a in node.names
                if not a.name.startswith("asynclm")
            }
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_external(node.module):
            names |= {a.asname or a.name for a in node.names}
    return names


def _is_external(module: str | None) -> bool:
    return bool(module) and not str(module).startswith("asynclm")


def _root(value: ast.expr) -> ast.expr:
    while isinstance(value, ast.Attribute):
        value = value.value
    return value


def _is_owner(value: ast.expr, allowed: set[str]) -> bool:
    if isinstance(value, ast.Name):
        return value.id in allowed
    root = _root(value)
    if isinstance(root, ast.Name) and root.id in allowed - OWNERS:
        return True  # a third-party module's internals, or a nested name of an own class
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


def main() -> int:
    problems = [
        hit for path in sorted((ROOT / "asynclm").rglob("*.py")) for hit in private_accesses(path)
    ]
    for hit in problems:
        print(f"private access: {hit}")
    status = lint_imports()
    if problems:
        print(f"{len(problems)} access(es) to another object's private members")
    return 1 if problems or status else 0


if __name__ == "__main__":
    sys.exit(main())
