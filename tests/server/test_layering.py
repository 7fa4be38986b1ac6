"""The embedded daemon does not depend on the client side of pyxs."""

import ast
import os
from typing import Set

import pyxs

_TOP = os.path.dirname(os.path.abspath(pyxs.__file__))
#: Modules of the client side the daemon must never reach.
_CLIENT_SIDE = {"pyxs.client", "pyxs.router", "pyxs.monitor",
                "pyxs.connection", "pyxs.testing"}


def _module_file(name: str) -> str:
    parts = name.split(".")[1:]
    base = os.path.join(_TOP, *parts)
    if os.path.isdir(base):
        return os.path.join(base, "__init__.py")
    return base + ".py"


def _imports(name: str) -> Set[str]:
    """The pyxs modules ``name`` imports, anywhere in its body."""
    path = _module_file(name)
    package = name if path.endswith("__init__.py") else \
        name.rpartition(".")[0]
    with open(path) as source:
        tree = ast.parse(source.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            if node.level:
                module = base + ("." + module if module else "")
            found.add(module)
            for alias in node.names:  # "from . import tree"
                if os.path.exists(_module_file(module + "." + alias.name)):
                    found.add(module + "." + alias.name)
    return {m for m in found if m.startswith("pyxs.") and m != "pyxs"}


def test_the_server_never_imports_the_client() -> None:
    server_dir = os.path.join(_TOP, "server")
    todo = ["pyxs.server." + name[:-3] for name in os.listdir(server_dir)
            if name.endswith(".py") and name != "__init__.py"]
    todo.append("pyxs.server")
    seen: Set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(name))
    assert "pyxs.server.daemon" in seen and "pyxs._internal" in seen
    assert not seen & _CLIENT_SIDE, sorted(seen & _CLIENT_SIDE)
