"""Saving and loading the tree (values and permissions) as JSON.

Saving writes a temporary file next to the target and renames it over the
target, so a crash never leaves a half-written store behind.
"""

import base64
import json
import os
import tempfile
from typing import Dict

from .perms import Perms, format_perms, parse_perms
from .store import SPECIAL_PATHS, Node, Store

__all__ = ["save", "load", "dumps", "loads"]

_VERSION = 1


def _perms_out(perms: Perms) -> list:
    return [p.decode("ascii") for p in format_perms(perms).split(b"\x00")[:-1]]


def _perms_in(items: list) -> Perms:
    return parse_perms([item.encode("ascii") for item in items])


def dumps(store: Store) -> str:
    """The store as a JSON document."""
    nodes = {}
    for path, node in store.nodes.items():
        nodes[path.decode("ascii")] = {
            "value": base64.b64encode(node.value).decode("ascii"),
            "perms": _perms_out(node.perms),
            "children": [name.decode("ascii") for name in node.children],
        }
    special = {path.decode("ascii"): _perms_out(perms)
               for path, perms in store.special_perms.items()}
    return json.dumps({"version": _VERSION, "nodes": nodes,
                       "special": special}, indent=1, sort_keys=True)


def loads(store: Store, text: str) -> None:
    """Replaces the store's tree with the one in a JSON document."""
    document = json.loads(text)
    if document.get("version") != _VERSION:
        raise ValueError("unsupported store file version %r"
                         % document.get("version"))
    nodes: Dict[bytes, Node] = {}
    for path, item in document["nodes"].items():
        nodes[path.encode("ascii")] = Node(
            base64.b64decode(item["value"]), _perms_in(item["perms"]),
            tuple(name.encode("ascii") for name in item["children"]))
    if b"/" not in nodes:
        raise ValueError("store file has no root node")
    special = {path.encode("ascii"): _perms_in(perms)
               for path, perms in document.get("special", {}).items()
               if path.encode("ascii") in SPECIAL_PATHS}
    store.replace_tree(nodes, special)


def save(store: Store, path: str) -> None:
    """Writes the store to ``path`` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".pyxs-store-",
                                         dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(dumps(store))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def load(store: Store, path: str) -> None:
    """Loads the store from ``path``."""
    with open(path) as source:
        loads(store, source.read())
