"""Sphinx configuration for the pyxs documentation."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)  # autodoc imports pyxs from this checkout


def _version() -> str:
    # Read, not imported: the version is known even if pyxs fails to import.
    with open(os.path.join(TOP, "pyxs", "__init__.py"),
              encoding="utf-8") as handle:
        match = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ in pyxs/__init__.py")
    return match.group(1)


project = "pyxs"
author = "the pyxs authors"
copyright = "the pyxs authors; LGPL-3.0-or-later"
release = _version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

# No network access while building: intersphinx is not enabled.


master_doc = "index"
root_doc = "index"
exclude_patterns = ["_build", "_static"]  # _static: included files
pygments_style = "sphinx"

autodoc_member_order = "bysource"
# No "members" default: Sphinx 9 lets a default of members override a
# directive's own list (":members: Client, Monitor"), so each directive
# says :members: itself.
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "description"

html_theme = "alabaster"
html_theme_options = {
    "description": "A pure-Python XenStore client",
    "fixed_sidebar": True,
}
html_static_path: list = []

# Every cross-reference is checked (CI builds with -n -W). pyxs's own
# names must resolve; Python's cannot offline (intersphinx needs the
# network), so they are listed here, each one.
nitpicky = True
nitpick_ignore = [
    ("py:class", "_asyncio.Future"),
    ("py:class", "collections.OrderedDict"),
    ("py:class", "_queue.SimpleQueue"),
    ("py:class", "argparse.ArgumentParser"),
    ("py:class", "concurrent.futures.Future"),
    ("py:class", "enum.IntFlag"),
    ("py:class", "queue.SimpleQueue"),
    ("py:class", "socket.socket"),
    ("py:class", "subprocess.CompletedProcess"),
    ("py:class", "subprocess.Popen"),
    ("py:class", "threading.Thread"),
    ("py:func", "copy.copy"),
    ("py:func", "os.fork"),
    ("py:func", "os.listdir"),
    ("py:func", "os.walk"),
    ("py:func", "time.monotonic"),
    ("py:mod", "errno"),
    ("py:mod", "selectors"),
    ("py:mod", "tracemalloc"),
]
# pyxs's own private names, each deliberately undocumented:
nitpick_ignore += [
    # Private NamedTuples: Packet's base (its fields are documented on
    # Packet) and decode_header's result (op, rq_id, tx_id, size).
    ("py:class", "pyxs._internal._Header"),
    ("py:class", "pyxs._internal._PacketFields"),
    # What the pyxs 0.4 transport API (create_transport) returns; the
    # method's docstring names the four methods it offers.
    ("py:class", "pyxs.connection._UnixSocketTransport"),
    ("py:class", "pyxs.connection._XenBusTransport"),
]
# Type variables of generic signatures: not objects autodoc documents.
nitpick_ignore_regex = [
    (r"py:(class|obj)", r"pyxs(\.\w+)+\.[TSW]"),
]


def _import(dotted: str):
    """The object a dotted name names, or None."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            return None
        return found
    return None


def _documented(env):
    """id() of each documented object -> the name it is documented as."""
    cache = getattr(env, "_pyxs_documented", None)
    if cache is None:
        cache = {}
        for name in env.get_domain("py").objects:
            found = _import(name)
            if found is not None:
                cache.setdefault(id(found), name)
        env._pyxs_documented = cache
    return cache


def _resolve_alias(app, env, node, contnode):
    """A reference to a documented object under another of its names
    (``pyxs.Client`` for ``pyxs.client.Client``, a type hint naming a
    private module) resolves to where it is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    candidates = [target]
    for context in (node.get("py:class"), node.get("py:module")):
        if context:
            module = node.get("py:module") or ""
            prefix = (module + "." + context) if context != module \
                else module
            candidates.append(prefix + "." + target)
    for candidate in candidates:
        found = _import(candidate)
        name = _documented(env).get(id(found)) if found is not None else None
        if name is not None and name != target:
            return env.get_domain("py").resolve_xref(
                env, node.get("refdoc", ""), app.builder,
                node["reftype"], name, node, contnode)
    return None


def _type_checking_imports(module_name):
    """Names a module imports only for type checkers (``if
    TYPE_CHECKING:``), mapped to the dotted names they stand for."""
    import ast
    import importlib
    import importlib.util
    import inspect

    try:
        module = importlib.import_module(module_name)
        tree = ast.parse(inspect.getsource(module))
    except (ImportError, OSError, TypeError, SyntaxError):
        return {}
    package = module.__name__ if hasattr(module, "__path__") \
        else module.__name__.rpartition(".")[0]
    names = {}
    for node in tree.body:
        test = getattr(node, "test", None)
        if not isinstance(node, ast.If) or "TYPE_CHECKING" not in {
                getattr(test, "id", None), getattr(test, "attr", None)}:
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom):
                source = importlib.util.resolve_name(
                    "." * statement.level + (statement.module or ""),
                    package)
                for alias in statement.names:
                    names[alias.asname or alias.name] = \
                        source + "." + alias.name
    return names


def _qualify_type_checking_names(app, doctree):
    """A bare name in a docstring or a string annotation of a module that
    imports it under ``if TYPE_CHECKING:`` (``client: "Client"`` in
    pyxs._batch) means what that import names. Sphinx cannot know that:
    its fuzzy search for type hints would find every ``Client``."""
    from sphinx import addnodes

    cache = {}
    # findall: docutils 0.18; traverse, its older name, warns in 0.21.
    find = getattr(doctree, "findall", None) or doctree.traverse
    for node in find(addnodes.pending_xref):
        module = node.get("py:module")
        target = node.get("reftarget", "")
        if node.get("refdomain") != "py" or not module or "." in target:
            continue
        if module not in cache:
            cache[module] = _type_checking_imports(module)
        if target in cache[module]:
            node["reftarget"] = cache[module][target]


def setup(app):
    app.connect("doctree-read", _qualify_type_checking_names)
    app.connect("missing-reference", _resolve_alias)
