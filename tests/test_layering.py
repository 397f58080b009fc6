"""The package's layers: the core never imports an application, and no module imports itself
back through others (an import inside a function counts: it is the same dependency, only later).

    core          config, errors, devices, optimizer, runtime, losses, early_stopping, cuda_graphs,
                  runner, preflight, inference, generators/, features/, editing/, evaluation/, io/
    applications  cli/, notebooks/, sweeps/, offline/ (they may import the core and each other)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "siso_lib"
APPLICATIONS = ("siso_lib.cli", "siso_lib.notebooks", "siso_lib.sweeps", "siso_lib.offline")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The siso_lib modules `path` imports anywhere in its code (a package counts as its __init__)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate in modules:
                found.add(candidate)
                break
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) for name, path in paths.items()}


def is_application(module: str) -> bool:
    return any(module == app or module.startswith(app + ".") for app in APPLICATIONS)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is how packages re-export
            if target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if state.get(target) is None:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_core_never_imports_an_application():
    graph = import_graph()
    wrong = sorted(f"{module} -> {target}" for module, targets in graph.items() if not is_application(module)
                   for target in targets if is_application(target))
    assert not wrong, "core modules import applications:\n" + "\n".join(wrong)


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_can_fail():
    """The two checks above on made-up graphs: a cycle and a core -> application edge are found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert is_application("siso_lib.cli.generate") and not is_application("siso_lib.config")
    assert not is_application("siso_lib.client")  # a prefix of a name is not the package


@pytest.mark.parametrize("entry", ["io", "cli", "notebooks", "sweeps", "offline", "generators", "features", "editing", "evaluation"])
def test_every_subpackage_is_a_package(entry):
    assert (PACKAGE / entry / "__init__.py").is_file()
