"""The XenStore node operations with C xenstored's permission rules.

Each function works on a :class:`~.store.View` (the committed tree or a
transaction), checks access for a :class:`~.perms.Who` and quotas, and
returns what watches need to know as a :class:`Change`.
"""

from typing import List, NamedTuple, Optional, Tuple

from .errors import XenStoreError
from .perms import OWNER, READ, WRITE, Perm, Perms, Who
from .quotas import Quotas
from .store import Node, View, join, name_of, parent_of

__all__ = ["Change", "lookup", "write", "mkdir", "remove", "set_perms",
           "directory", "directory_part", "subtree_paths", "release_domain"]

#: DIRECTORY replies and DIRECTORY_PART chunks must fit one payload.
_PAYLOAD_MAX = 4096


class Change(NamedTuple):
    """A modification watches may fire for.

    ``perms`` decide which unprivileged watchers may see it; ``removed``
    lists every node of a removed subtree with its permissions.
    """

    path: bytes
    perms: Perms
    removed: Tuple[Tuple[bytes, Perms], ...] = ()


def _missing(view: View, who: Who, path: bytes, need: int) -> XenStoreError:
    """ENOENT, or EACCES when the nearest existing ancestor is off limits.

    Walking up also records those ancestors in a transaction, as C does.
    """
    while path != b"/":
        path = parent_of(path)
        node = view.get(path)
        if node is not None:
            return XenStoreError("ENOENT" if who.may(node.perms, need)
                                 else "EACCES")
    return XenStoreError("ENOENT")


def lookup(view: View, who: Who, path: bytes, need: int = READ) -> Node:
    """The node at ``path`` if ``who`` has ``need`` on it."""
    node = view.get(path)
    if node is None:
        raise _missing(view, who, path, need)
    if not who.may(node.perms, need):
        raise XenStoreError("EACCES")
    return node


def _check_size(who: Who, quotas: Quotas, *nodes: Node) -> None:
    if not who.privileged:
        for node in nodes:
            if node.data_size() >= quotas.node_size:
                raise XenStoreError("ENOSPC")


def _check_tx_size(view: View, who: Who, quotas: Quotas) -> None:
    if not who.privileged and view.accessed() > quotas.transaction_nodes:
        raise XenStoreError("ENOSPC")


def _create(view: View, who: Who, quotas: Quotas, path: bytes,
            value: bytes) -> Node:
    """Creates ``path`` and any missing ancestors, leaf first; returns the
    new leaf."""
    missing = [path]
    parent_path = parent_of(path)
    parent = view.get(parent_path)
    while parent is None:
        missing.append(parent_path)
        parent_path = parent_of(parent_path)
        parent = view.get(parent_path)
    if not who.may(parent.perms, WRITE):
        raise XenStoreError("EACCES")
    perms = parent.perms
    if not who.privileged:
        perms = (Perm(who.domid, perms[0].mode),) + perms[1:]
        if view.owned_by(who.domid) + len(missing) > quotas.nodes:
            raise XenStoreError("ENOSPC")
    created = []
    for index in range(len(missing)):
        children = (name_of(missing[index - 1]),) if index else ()
        created.append(Node(value if index == 0 else b"", perms, children))
    grown = parent._replace(children=parent.children + (name_of(missing[-1]),))
    _check_size(who, quotas, grown, *created)
    leaf = view.put(missing[0], created[0])
    for node_path, node in zip(missing[1:], created[1:]):
        view.put(node_path, node)
    view.put(parent_path, grown)
    _check_tx_size(view, who, quotas)
    return leaf


def write(view: View, who: Who, quotas: Quotas, path: bytes,
          value: bytes) -> Change:
    """WRITE: sets a value, creating the node and its parents if needed."""
    node = view.get(path)
    if node is None:
        node = _create(view, who, quotas, path, value)
    else:
        if not who.may(node.perms, WRITE):
            raise XenStoreError("EACCES")
        node = node._replace(value=value)
        _check_size(who, quotas, node)
        view.put(path, node)
    return Change(path, node.perms)


def mkdir(view: View, who: Who, quotas: Quotas,
          path: bytes) -> Optional[Change]:
    """MKDIR: creates an empty node; an existing one is left alone."""
    node = view.get(path)
    if node is not None:
        if not who.may(node.perms, WRITE):
            raise XenStoreError("EACCES")
        return None
    return Change(path, _create(view, who, quotas, path, b"").perms)


def _subtree(view: View, path: bytes, node: Node) -> List[
        Tuple[bytes, Node]]:
    """Every node at or below ``path`` (children first), without recursion:
    a tree may be as deep as the path-length limit allows."""
    found: List[Tuple[bytes, Node]] = []
    stack: List[Tuple[bytes, Node, bool]] = [(path, node, False)]
    while stack:
        node_path, current, expanded = stack.pop()
        if expanded:
            found.append((node_path, current))
            continue
        stack.append((node_path, current, True))
        for name in reversed(current.children):
            child_path = join(node_path, name)
            child = view.get(child_path)
            if child is not None:
                stack.append((child_path, child, False))
    return found


def remove(view: View, who: Who, quotas: Quotas,
           path: bytes) -> Optional[Change]:
    """RM: removes a subtree; a missing node under an existing parent is OK."""
    node = view.get(path)  # C looks the root up before refusing it
    if path == b"/":
        raise XenStoreError("EINVAL")
    if node is None:
        error = _missing(view, who, path, WRITE)
        if error.name == "ENOENT" and view.get(parent_of(path)) is not None:
            return None
        raise error
    if not who.may(node.perms, WRITE):
        raise XenStoreError("EACCES")
    return _remove_subtree(view, path, node)


def _remove_subtree(view: View, path: bytes, node: Node) -> Change:
    """Removes a subtree the way C does, step by step.

    C deletes children first (always the first remaining child), each
    deletion costing a generation and rewriting the parent (another one).
    A transaction view that went stale can hold a listed child that is
    gone, or lose the parent's link: C then stops part way with EIO (or
    EINVAL without a parent), keeping what it did; so does this.
    """
    parent_path = parent_of(path)
    parent = view.get(parent_path)
    if parent is None:
        raise XenStoreError("EINVAL")
    removed: List[Tuple[bytes, Perms]] = []
    # Depth first with an explicit stack (no recursion: a guest may build a
    # tree as deep as its path-length limit allows). The top of the stack
    # is the node being emptied; its first remaining child goes next.
    stack = [path]
    current: Optional[Node] = node
    while stack:
        node_path = stack[-1]
        if current is None:
            current = view.get(node_path)
            if current is None:
                raise XenStoreError("EIO")
        if current.children:
            child_path = join(node_path, current.children[0])
            current = view.get(child_path)
            if current is None:
                raise XenStoreError("EIO")
            stack.append(child_path)
            continue
        removed.append((node_path, current.perms))
        view.delete(node_path)
        view.store.generation += 1
        if node_path != path:
            _unlink(view, node_path)
        stack.pop()
        current = None
    _unlink(view, path)
    return Change(path, node.perms, tuple(removed))


def _unlink(view: View, path: bytes) -> None:
    parent_path, name = parent_of(path), name_of(path)
    parent = view.get(parent_path)
    if parent is None or name not in parent.children:
        raise XenStoreError("EIO")
    # Only the first match goes: a stale transaction view can list a name
    # twice, and C then trips over the second one.
    children = list(parent.children)
    children.remove(name)
    view.put(parent_path, parent._replace(children=tuple(children)))


def release_domain(view: View, domid: int) -> List[Change]:
    """What C does when a domain is released: every node the domain owns
    is removed with its subtree (the root excepted)."""
    changes: List[Change] = []
    # Pre-order, siblings in the order their parent listed them when it
    # was visited; an explicit stack, as trees can be deep.
    stack = [b"/"]
    while stack:
        path = stack.pop()
        node = view.get(path)
        if node is None:
            continue
        if node.owner == domid and path != b"/":
            changes.append(_remove_subtree(view, path, node))
            continue
        stack.extend(join(path, name) for name in reversed(node.children))
    return changes


def set_perms(view: View, who: Who, quotas: Quotas, path: bytes,
              perms: Perms) -> Change:
    """SET_PERMS: only the owner may, and may not give the node away."""
    if not who.privileged and len(perms) > quotas.perms:
        raise XenStoreError("ENOSPC")
    node = lookup(view, who, path, WRITE | OWNER)
    if not who.privileged and perms[0].domid != node.owner:
        raise XenStoreError("EPERM")
    changed = node._replace(perms=perms)
    _check_size(who, quotas, changed)
    view.put(path, changed)
    return Change(path, node.perms)


def directory(node: Node) -> bytes:
    """The DIRECTORY reply body, E2BIG when it does not fit a payload."""
    body = b"".join(name + b"\x00" for name in node.children)
    if len(body) > _PAYLOAD_MAX:
        raise XenStoreError("E2BIG")
    return body


def directory_part(node: Node, offset: int) -> bytes:
    """One DIRECTORY_PART chunk: generation, whole names, end marker."""
    generation = str(node.generation).encode("ascii") + b"\x00"
    children = b"".join(name + b"\x00" for name in node.children)
    if offset >= len(children):
        return generation + b"\x00"
    room = _PAYLOAD_MAX - len(generation) - 1
    end = offset
    while end < len(children):
        step = children.index(b"\x00", end) + 1 - end
        if end - offset + step > room:
            break
        end += step
    body = generation + children[offset:end]
    return body + b"\x00" if end == len(children) else body


def subtree_paths(view: View, path: bytes) -> List[bytes]:
    """Every path at or below ``path`` (for tests and persistence)."""
    node = view.get(path)
    return sorted(p for p, _ in _subtree(view, path, node)) if node else []
