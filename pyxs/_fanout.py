"""Watch fan-out: which subscribers receive an event, by token.

Pure state, no I/O. A subscriber is anything with the two methods of
:class:`Subscriber` (a :class:`~pyxs.monitor.Monitor`, an asyncio monitor,
a test double).

Invariants
----------
1. A token maps to a non-empty set of subscribers; a token whose last
   subscriber leaves is forgotten, so ``bool(fanout)`` is "some watch
   exists", which tells the router whether to read for events.
2. Every subscriber ever attached, watching or not, is told once when the
   connection ends (:meth:`WatchFanout.everyone`); attachments are weak, so
   a forgotten monitor is not kept alive by its router.
"""

import weakref
from typing import Dict, FrozenSet, Protocol, Set, Tuple

from ._internal import Event
from .exceptions import PyXSError

__all__ = ["Subscriber", "WatchFanout"]


class Subscriber(Protocol):
    """What a router calls on a monitor; both calls must not block."""

    def deliver(self, event: Event) -> None:
        """Queues one event."""

    def connection_lost(self, error: PyXSError) -> None:
        """The connection ended: every later wait fails with ``error``."""


class WatchFanout:
    """Subscribers by watch token."""

    __slots__ = ("_by_token", "_attached")

    def __init__(self) -> None:
        self._by_token: Dict[bytes, Set[Subscriber]] = {}
        self._attached: "weakref.WeakSet[Subscriber]" = weakref.WeakSet()

    def __bool__(self) -> bool:
        return bool(self._by_token)

    def attach(self, subscriber: Subscriber) -> None:
        """Remembers ``subscriber`` (weakly) to tell it of the end."""
        self._attached.add(subscriber)

    def subscribe(self, token: bytes, subscriber: Subscriber) -> bool:
        """Routes events carrying ``token`` to ``subscriber`` too; True
        when this is the first watch of all."""
        first = not self._by_token
        self._by_token.setdefault(token, set()).add(subscriber)
        self._attached.add(subscriber)
        return first

    def unsubscribe(self, token: bytes, subscriber: Subscriber) -> bool:
        """Stops routing ``token`` to ``subscriber``; True when no watch
        is left at all."""
        subscribers = self._by_token.get(token)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_token[token]
        return not self._by_token

    def tokens(self) -> FrozenSet[bytes]:
        """The tokens watched."""
        return frozenset(self._by_token)

    def route(self, event: Event) -> Tuple[Subscriber, ...]:
        """The subscribers of ``event``'s token (often none)."""
        subscribers = self._by_token.get(event.token)
        return tuple(subscribers) if subscribers else ()

    def everyone(self) -> Set[Subscriber]:
        """Every subscriber attached or watching, for the end."""
        everyone = set(self._attached)
        for subscribers in self._by_token.values():
            everyone.update(subscribers)
        return everyone

    def clear(self) -> None:
        """Forgets every watch (the connection is gone)."""
        self._by_token.clear()
