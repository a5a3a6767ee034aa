"""The shape of the house (docs/architecture.md), read from the code's own import
statements (lazy ones included): floors that import only downwards, layers that never
import each other, the CLI, runner, reports and plugin reaching the layers only through
the API, no import cycle, and no module over 600 lines."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "verify"
MAX_LINES = 600

# floor -> the floors it may import (its own floor included; a layer: only its own package)
FLOORS = {
    "core": {"core"},
    "layers": {"core"},
    "api": {"core", "layers", "api"},
    "run": {"core", "api", "run"},
    "report": {"core", "run", "report"},
    "cli": {"core", "api", "run", "report", "cli"},
    "plugin": {"core", "api"},
    "face": {"core", "api", "cli"},
}


def floor_of(module: str) -> str:
    parts = module.split(".")
    if module in ("verify", "verify.__main__"):
        return "face"
    if module == "verify.pytest_plugin":
        return "plugin"
    if module in ("verify.errors", "verify.strategies") or parts[1] == "core":
        return "core"
    return parts[1]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known) -> set[str]:
    """The modules of ``verify`` that ``name`` imports (``from a import b``: a.b when b is
    a module, else a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "layers" else None


def test_floors_import_only_downwards_and_layers_never_each_other():
    wrong = []
    for module, targets in graph().items():
        floor = floor_of(module)
        for target in targets:
            if target in ("verify.layers",):  # the namespace package itself
                continue
            allowed = FLOORS[floor]
            if floor_of(target) not in allowed and not (floor == "layers" and layer_of(target) == layer_of(module)):
                wrong.append(f"{module} ({floor}) imports {target} ({floor_of(target)})")
            elif floor == "layers" and floor_of(target) == "layers" and layer_of(target) != layer_of(module):
                wrong.append(f"{module} imports another layer: {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_no_module_is_over_600_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


@pytest.mark.parametrize("source, expected", [
    ("from verify.layers import floating\n", "verify.layers.floating"),
    ("from verify.api import check\n", "verify.api"),
    ("def f():\n    from ..core import claims\n", "verify.core.claims"),
])
def test_the_checker_sees_imports(tmp_path, source, expected):
    """The graph above is read right: plain, package-level and lazy relative imports."""
    path = tmp_path / "module.py"
    path.write_text(source)
    assert imports("verify.run.module", path, modules()) == {expected}
