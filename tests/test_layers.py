"""The package's layering, read from its source (no import is run).

Every ``import`` of every module of ``pyxs`` counts, including those
inside functions; only imports under ``if TYPE_CHECKING:`` (for the type
checker, never executed) do not. The rules (docs/architecture.rst):

* no cycle between pyxs's modules;
* the pure core (protocol layer and multiplexer core) does no I/O and
  starts no thread: it imports no socket, selector, thread or asyncio
  module;
* the embedded daemon does not depend on the client side;
* the threaded client side does not depend on asyncio.
"""

import ast
import os
from typing import Dict, List, Set

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "pyxs")

CORE = ["pyxs._ops", "pyxs._internal", "pyxs._pending", "pyxs._role",
        "pyxs._outbox", "pyxs._fanout", "pyxs._requests", "pyxs._replies",
        "pyxs._depth", "pyxs._features", "pyxs.exceptions", "pyxs.helpers"]
IO_MODULES = {"socket", "select", "selectors", "threading", "_thread",
              "asyncio", "subprocess", "_socket"}
CLIENT_SIDE = {"pyxs.client", "pyxs.router", "pyxs.monitor", "pyxs.aio",
               "pyxs._driver", "pyxs._batch", "pyxs._walk", "pyxs.recipes"}


def module_name(path: str) -> str:
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))
    parts = relative[:-len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[module_name(path)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: str, known: Set[str]) -> Set[str]:
    """The modules ``name`` imports (pyxs's own resolved to the module)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = name if path.endswith("__init__.py") else \
        name.rpartition(".")[0]
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                candidate = base + "." + alias.name
                found.add(candidate if candidate in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    found.discard(name)
    return found


GRAPH = {name: imports_of(name, path, set(modules()))
         for name, path in modules().items()}


def own(targets: Set[str]) -> Set[str]:
    return {t for t in targets if t == "pyxs" or t.startswith("pyxs.")}


def test_the_graph_was_read():
    assert len(GRAPH) > 50
    assert "pyxs._pending" in GRAPH["pyxs._driver"]


def test_no_import_cycle():
    state: Dict[str, int] = {}
    stack: List[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(own(GRAPH.get(name, set()))):
            if target == "pyxs" or target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name)


@pytest.mark.parametrize("name", CORE)
def test_the_core_does_no_io(name):
    assert not GRAPH[name] & IO_MODULES, GRAPH[name] & IO_MODULES
    assert not own(GRAPH[name]) & CLIENT_SIDE


def test_the_embedded_daemon_is_independent_of_the_client():
    for name, targets in GRAPH.items():
        if name.startswith("pyxs.server"):
            bad = {t for t in own(targets)
                   if any(t == c or t.startswith(c + ".")
                          for c in CLIENT_SIDE)}
            assert not bad, (name, bad)


def test_the_threaded_client_does_not_need_asyncio():
    for name in ("pyxs.client", "pyxs.router", "pyxs.monitor",
                 "pyxs._driver", "pyxs._batch", "pyxs._walk"):
        assert "asyncio" not in GRAPH[name]
        assert not {t for t in own(GRAPH[name]) if t.startswith("pyxs.aio")}
