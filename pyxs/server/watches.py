"""Watches: which registered watches a change fires, with which event path.

C xenstored's rules: a watch fires for changes at or below its path; when a
subtree is removed, watches on removed nodes below the removed path fire
with their own path; unprivileged watchers only hear about nodes they may
read; a relative watch gets relative event paths.
"""

from typing import Iterable, Iterator, NamedTuple, Optional, Tuple

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
            if who.may(change.perms, READ):
                yield watch.event_path(change.path), watch.token
        elif watch.path in removed and is_below(watch.path, change.path):
            if who.may(removed[watch.path], READ):
                yield watch.event_path(watch.path), watch.token


def events_for_special(watches: Iterable[Watch], who: Who, path: bytes,
                       perms: Perms) -> Iterator[Tuple[bytes, bytes]]:
    """Events for ``@introduceDomain`` / ``@releaseDomain``."""
    if not who.may(perms, READ):
        return
    for watch in watches:
        if watch.path == path:
            yield path, watch.token
