"""Watch depth: which event paths a watch limited to a depth matches.

Pure functions, no I/O. XenStore's rule (``docs/misc/xenstore.txt``, Xen
4.22): a watch on ``wpath`` with depth ``d`` matches ``wpath`` itself and
the nodes at most ``d`` directory levels below it; depth 0 matches
``wpath`` only, depth 1 its direct children too. A watch on ``/`` counts
``/a`` as one level below. Relative watch paths work the same way, as
their events are relative too.

A :class:`~pyxs.Monitor` uses this to filter events itself when the daemon
does not offer ``WATCHDEPTH``. Invariant: :func:`levels_below` agrees with
the daemon's prefix rule (a watch fires for ``path`` iff ``path`` is
``wpath`` or lies below it), so filtering a plain watch with
:func:`within_depth` yields exactly the events a depth watch would get.
"""

from typing import Any, Container, Iterable, Mapping, Optional, Tuple

from ._features import Feature, lacks_watchdepth

__all__ = ["levels_below", "within_depth", "too_deep", "is_special",
           "check_depth", "plan_depth", "is_watched"]


def is_special(wpath: bytes) -> bool:
    """True for the ``@`` watch paths (``@releaseDomain`` and the like)."""
    return wpath[:1] == b"@"


def check_depth(wpath: bytes, depth: Any) -> Tuple[Optional[int], bool]:
    """Checks the depth of a watch on ``wpath`` (already validated);
    returns it and whether the watch needs to know if the daemon offers
    WATCHDEPTH (a depth, or a special path naming one domain).

    Special paths take only depth 1 (``ValueError`` otherwise).
    """
    domain_path = is_special(wpath) and b"/" in wpath
    if depth is None:
        return None, domain_path
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError("depth must be an int, not %s"
                        % type(depth).__name__)
    if not 0 <= depth < 2 ** 31:
        raise ValueError("watch depth %d is out of range (0 to %d)"
                         % (depth, 2 ** 31 - 1))
    if is_special(wpath) and (depth != 1 or domain_path):
        raise ValueError("watch depth %d on %s: a special path takes only "
                         "depth 1 (events then name the domid)"
                         % (depth, wpath.decode("ascii")))
    return int(depth), True


def is_watched(event: Tuple[bytes, bytes],
               watches: Container[Tuple[bytes, bytes]]) -> bool:
    """Whether some ``(wpath, token)`` of ``watches`` covers the event: its
    token, on its path or an ancestor of it (a monitor drops events of
    watches it removed meanwhile)."""
    path, token = event
    while True:  # the path itself, then each ancestor
        if (path, token) in watches:
            return True
        cut = path.rfind(b"/")
        if cut < 0 or path == b"/":
            return False
        path = path[:cut] or b"/"


def plan_depth(wpath: bytes, depth: Optional[int], features: int
               ) -> Tuple[Optional[int], Optional[int]]:
    """How a watch with a checked ``depth`` (see :func:`check_depth`) is
    set, given the ``features`` the daemon offers: ``(sent, own)``, the
    depth to send and the depth the monitor filters by itself. Without
    WATCHDEPTH a depth is filtered client-side, and a special path naming
    a domain cannot be watched (:exc:`~pyxs.UnsupportedOperation`)."""
    if features & Feature.WATCHDEPTH:
        return depth, None
    if is_special(wpath):
        raise lacks_watchdepth(wpath, depth)
    return None, depth


def levels_below(path: bytes, wpath: bytes) -> Optional[int]:
    """How many levels ``path`` lies below ``wpath``: 0 for ``wpath``
    itself, None when ``path`` is not ``wpath`` nor below it."""
    if path == wpath:
        return 0
    if wpath == b"/":
        if path[:1] != b"/":
            return None
        return path.count(b"/")
    if not path.startswith(wpath) or path[len(wpath):len(wpath) + 1] != b"/":
        return None
    return path.count(b"/", len(wpath))


def within_depth(path: bytes, wpath: bytes, depth: Optional[int]) -> bool:
    """Whether a watch on ``wpath`` limited to ``depth`` (None: no limit)
    matches an event on ``path``."""
    levels = levels_below(path, wpath)
    return levels is not None and (depth is None or levels <= depth)


def too_deep(path: bytes, token: bytes,
             watches: Iterable[Tuple[bytes, bytes]],
             depths: Mapping[Tuple[bytes, bytes], int]) -> bool:
    """Whether an event is to be dropped because of client-side depths.

    ``watches`` are a monitor's ``(wpath, token)`` pairs, ``depths`` the
    depth of those the monitor filters itself. The event is dropped when
    some filtered watch with this token covers ``path`` but none of the
    watches with this token accepts it; events no watch covers are left
    for the monitor's usual handling.
    """
    covered = False
    for key in set(watches).union(depths):
        wpath, wtoken = key
        if wtoken != token:
            continue
        levels = levels_below(path, wpath)
        if levels is None:
            continue
        depth = depths.get(key)
        if depth is None or levels <= depth:
            return False
        covered = True
    return covered
