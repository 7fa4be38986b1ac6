"""Watches: which registered watches a change fires, with which event path.

C xenstored's rules: a watch fires for changes at or below its path (with
a depth, at most that many levels below: Xen 4.22); when a subtree is
removed, watches on removed nodes below the removed path fire with their
own path, whatever their depth; unprivileged watchers only hear about
nodes they may read; a relative watch gets relative event paths. Special
events fire ``@releaseDomain`` for watches without depth and, from Xen
4.22 on, ``@releaseDomain/<domid>`` for watches on that path or with a
depth of 1 or more (the same for ``@introduceDomain``).
"""

from typing import Iterable, Iterator, NamedTuple, Optional, Tuple

from .._depth import within_depth
from .perms import READ, Perms, Who
from .tree import Change

__all__ = ["Watch", "events_for_change", "events_for_special", "is_below"]


class Watch(NamedTuple):
    """A registered watch.

    ``path`` is absolute (or a special ``@name``); ``prefix`` is the domain
    home ``/local/domain/<id>/`` when the client registered it relative,
    and is stripped from event paths again.
    """

    path: bytes
    token: bytes
    prefix: Optional[bytes] = None
    #: Levels below ``path`` that fire; None: every level.
    depth: Optional[int] = None

    def event_path(self, path: bytes) -> bytes:
        """The path reported to the client for a change at ``path``."""
        if self.prefix and path.startswith(self.prefix):
            return path[len(self.prefix):]
        return path


def is_below(path: bytes, top: bytes) -> bool:
    """Whether ``path`` is ``top`` itself or a descendant of it."""
    if path == top or top == b"/":
        return path.startswith(b"/")
    return path.startswith(top) and path[len(top):len(top) + 1] == b"/"


def events_for_change(watches: Iterable[Watch], who: Who,
                      change: Change) -> Iterator[Tuple[bytes, bytes]]:
    """``(event path, token)`` pairs one watcher gets for ``change``."""
    removed = dict(change.removed)
    for watch in watches:
        if is_below(change.path, watch.path):
            if (watch.depth is None or within_depth(
                    change.path, watch.path, watch.depth)) and \
                    who.may(change.perms, READ):
                yield watch.event_path(change.path), watch.token
        elif watch.path in removed and is_below(watch.path, change.path):
            if who.may(removed[watch.path], READ):
                yield watch.event_path(watch.path), watch.token


def events_for_special(watches: Iterable[Watch], who: Who, path: bytes,
                       perms: Perms, domid: Optional[int] = None
                       ) -> Iterator[Tuple[bytes, bytes]]:
    """Events for ``@introduceDomain`` / ``@releaseDomain``; with
    ``domid`` (Xen 4.22) also the per-domain ``<path>/<domid>`` ones."""
    if not who.may(perms, READ):
        return
    watches = list(watches)
    for watch in watches:
        if watch.path == path and watch.depth is None:
            yield path, watch.token
    if domid is None:
        return
    named = b"%s/%d" % (path, domid)
    for watch in watches:
        if watch.path == named or (watch.depth and within_depth(
                named, watch.path, watch.depth)):
            yield named, watch.token
