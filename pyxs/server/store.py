"""The node tree, its generation counter and transactional views of it.

Pure data, no sockets. Generation numbers follow C xenstored 4.17 exactly
(they show up in DIRECTORY_PART replies): every node write takes the next
number, every removed node costs two, a transaction start costs one, and a
commit rewrites the transaction's modified nodes in first-access order.
"""

from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .errors import XenStoreError
from .perms import NONE, Perm, Perms

__all__ = ["Node", "Store", "View", "BaseView", "Transaction",
           "parent_of", "name_of", "join"]

_NO_ACCESS: Perms = (Perm(0, NONE),)
#: What a fresh C xenstored holds, with the generations it gives them.
_INITIAL = ((b"/", (b"tool",), 1), (b"/tool", (b"xenstored",), 2),
            (b"/tool/xenstored", (), 3))
SPECIAL_PATHS = (b"@introduceDomain", b"@releaseDomain")


class Node(NamedTuple):
    """One node; treated as immutable, changes make a new one."""

    value: bytes
    perms: Perms
    children: Tuple[bytes, ...]
    generation: int = 0

    @property
    def owner(self) -> int:
        """The domain the node is accounted to."""
        return self.perms[0].domid

    def data_size(self) -> int:
        """The size C's node-size quota measures (record header included)."""
        return (24 + 8 * len(self.perms) + len(self.value)
                + sum(len(name) + 1 for name in self.children))


def parent_of(path: bytes) -> bytes:
    """``/a/b`` -> ``/a``; ``/a`` -> ``/``."""
    return path.rsplit(b"/", 1)[0] or b"/"


def name_of(path: bytes) -> bytes:
    """The last component of a path."""
    return path.rsplit(b"/", 1)[1]


def join(path: bytes, name: bytes) -> bytes:
    """Appends a child name to a path."""
    return (b"" if path == b"/" else path) + b"/" + name


class Store:
    """The committed tree: nodes by absolute path plus daemon-wide state."""

    def __init__(self) -> None:
        self.nodes: Dict[bytes, Node] = {
            path: Node(b"", _NO_ACCESS, children, generation)
            for path, children, generation in _INITIAL}
        self.generation = 4
        #: Permissions of the special watch paths (settable, not readable).
        self.special_perms: Dict[bytes, Perms] = {
            path: _NO_ACCESS for path in SPECIAL_PATHS}
        self.owned: Dict[int, int] = {0: len(self.nodes)}
        #: When not None, every change to the committed tree since the
        #: journal last took them: path -> new node, or None once removed
        #: (only the final state of a path matters, so a path rewritten
        #: many times by one request is journaled once).
        self.log: Optional[Dict[bytes, Optional[Node]]] = None
        #: Special watch paths whose permissions changed, for the journal.
        self.special_log: Optional[Dict[bytes, Perms]] = None

    def next_generation(self) -> int:
        """Takes the next generation number."""
        generation = self.generation
        self.generation += 1
        return generation

    def account(self, old: Optional[Node], new: Optional[Node]) -> None:
        """Keeps the per-owner node counts right across a change."""
        if old is not None:
            self.owned[old.owner] = self.owned.get(old.owner, 0) - 1
        if new is not None:
            self.owned[new.owner] = self.owned.get(new.owner, 0) + 1

    def set_special_perms(self, path: bytes, perms: Perms) -> None:
        """Sets who may watch ``@introduceDomain`` or ``@releaseDomain``."""
        self.special_perms[path] = perms
        if self.special_log is not None:
            self.special_log[path] = perms

    def replace_tree(self, nodes: Dict[bytes, Node],
                     special: Dict[bytes, Perms]) -> None:
        """Installs a loaded tree (persistence); generations restart."""
        self.nodes = {}
        self.owned = {}
        for path in sorted(nodes, key=lambda p: (p.count(b"/"), p)):
            node = nodes[path]._replace(generation=self.next_generation())
            self.nodes[path] = node
            self.account(None, node)
        self.special_perms.update(special)


class View:
    """How operations see the tree: committed, or through a transaction."""

    store: Store

    def get(self, path: bytes) -> Optional[Node]:
        """The node at ``path`` or None; inside a transaction, records it."""
        raise NotImplementedError

    def put(self, path: bytes, node: Node) -> Node:
        """Stores ``node`` with a new generation and returns it."""
        raise NotImplementedError

    def delete(self, path: bytes) -> None:
        """Removes one node (children are the caller's business)."""
        raise NotImplementedError

    def owned_by(self, domid: int) -> int:
        """How many nodes ``domid`` owns as seen from this view."""
        raise NotImplementedError

    def accessed(self) -> int:
        """Nodes touched so far (transactions only; 0 otherwise)."""
        return 0


class BaseView(View):
    """Direct access to the committed tree."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, path: bytes) -> Optional[Node]:
        return self.store.nodes.get(path)

    def put(self, path: bytes, node: Node) -> Node:
        store = self.store
        node = node._replace(generation=store.next_generation())
        store.account(store.nodes.get(path), node)
        store.nodes[path] = node
        if store.log is not None:
            store.log[path] = node
        return node

    def delete(self, path: bytes) -> None:
        store = self.store
        store.account(store.nodes.pop(path, None), None)
        if store.log is not None:
            store.log[path] = None

    def owned_by(self, domid: int) -> int:
        return self.store.owned.get(domid, 0)


class Transaction(View):
    """A transaction's private view, built lazily as C xenstored does.

    A node is copied from the committed tree on first access and its
    generation remembered; commit fails with EAGAIN when any remembered
    node changed (or appeared, or vanished) in the meantime.
    """

    def __init__(self, store: Store, tx_id: int) -> None:
        self.store = store
        self.tx_id = tx_id
        store.next_generation()  # a transaction start costs one number
        self.nodes: Dict[bytes, Optional[Node]] = {}
        # path -> [generation at first access or None, modified?]
        self.seen: "OrderedDict[bytes, List[Any]]" = OrderedDict()
        self.owned_delta: Dict[int, int] = {}
        #: Watch changes to fire on commit, in order, deduplicated.
        self.changes: "OrderedDict[Tuple[bytes, bool], Any]" = OrderedDict()

    def get(self, path: bytes) -> Optional[Node]:
        if path in self.nodes:
            return self.nodes[path]
        node = self.store.nodes.get(path)
        self.seen[path] = [node.generation if node else None, False]
        self.nodes[path] = node
        return node

    def _set(self, path: bytes, node: Optional[Node]) -> None:
        old = self.get(path)
        for changed, step in ((old, -1), (node, 1)):
            if changed is not None:
                self.owned_delta[changed.owner] = \
                    self.owned_delta.get(changed.owner, 0) + step
        self.nodes[path] = node
        self.seen[path][1] = True

    def put(self, path: bytes, node: Node) -> Node:
        node = node._replace(generation=self.store.next_generation())
        self._set(path, node)
        return node

    def delete(self, path: bytes) -> None:
        self._set(path, None)

    def owned_by(self, domid: int) -> int:
        return self.store.owned.get(domid, 0) + self.owned_delta.get(domid, 0)

    def accessed(self) -> int:
        return len(self.seen)

    def commit(self) -> None:
        """Applies the transaction, or raises EAGAIN on a conflict."""
        committed = self.store.nodes
        for path, (generation, _) in self.seen.items():
            node = committed.get(path)
            if (node.generation if node else None) != generation:
                raise XenStoreError("EAGAIN")
        base = BaseView(self.store)
        for path, (_, modified) in self.seen.items():
            if modified:
                node = self.nodes[path]
                if node is None:
                    base.delete(path)
                else:
                    base.put(path, node)
