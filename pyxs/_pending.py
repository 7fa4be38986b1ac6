"""Requests in flight: request ids, their reply slots, and the reply check.

Pure bookkeeping, no I/O and no threads: the threaded router and the
asyncio client drive the same :class:`PendingTable`, each with its own kind
of slot (whatever object the driver wakes when a reply arrives).

Invariants
----------
1. Request ids are 1 .. 2**32 - 1. Id 0 is never allocated: old Linux
   xenbus drivers answer WATCH and UNWATCH with ``req_id = 0``.
2. Allocation goes round the id space and skips every id still in the
   table, abandoned ones included, so no two entries ever share an id, and
   a late reply can never reach a newer request that reused its id.
3. An entry leaves the table only through :meth:`~PendingTable.match` (its
   reply arrived) or :meth:`~PendingTable.fail_all` (the connection ended).
   Each slot is therefore handed at most one reply.
4. An abandoned entry (its caller stopped waiting: timeout, cancellation,
   Ctrl-C) keeps its id but no slot: its reply is recognised and dropped.
   At most ``abandoned_limit`` of them exist; :meth:`~PendingTable.abandon`
   says when the limit is passed, and the driver must then consider the
   connection broken (a daemon that answers nothing must not cost memory
   without bound).
5. :func:`check_reply` (from ``pyxs._replies``, re-exported here) is
   the one place where a reply's op and transaction are compared with its
   request's, for the table, for clients whose router is a foreign object
   and for the ``pyxs`` command's quick requests.

Threading contract (the threaded router): :meth:`~PendingTable.add`,
:meth:`~PendingTable.abandon` and :meth:`~PendingTable.fail_all` run under
the driver's lock; :meth:`~PendingTable.match` runs in the one
thread holding the reading role, without the lock. That is safe because
``match`` touches shared state only through single dict and set operations
(``pop``, ``get``, ``discard``, a C-level copy), each atomic in CPython,
and only ``match`` and ``fail_all`` remove entries.
"""

from typing import Any, Dict, Generic, List, Optional, Set, Tuple, TypeVar

from ._internal import Packet
from ._ops import Op, op_name
from ._replies import check_reply
from .exceptions import UnexpectedPacket

__all__ = ["PendingTable", "check_reply", "RQ_ID_LIMIT", "ABANDONED_LIMIT"]

S = TypeVar("S")

#: Request ids are below this (uint32 on the wire).
RQ_ID_LIMIT = 2 ** 32

#: Default number of abandoned requests tolerated before the connection is
#: considered broken (see invariant 4).
ABANDONED_LIMIT = 1024

_ERROR = int(Op.ERROR)
_QUIRK_OPS = (int(Op.WATCH), int(Op.UNWATCH))


# An entry is a list [slot or None once abandoned, op, tx_id]: a list,
# not a small class, because one is made per request on the hot path.
_SLOT, _OP, _TX = range(3)


class PendingTable(Generic[S]):
    """The requests in flight on one connection, by request id."""

    __slots__ = ("_entries", "_abandoned", "_next_id", "abandoned_limit")

    def __init__(self, abandoned_limit: int = ABANDONED_LIMIT) -> None:
        self._entries: Dict[int, List[Any]] = {}
        self._abandoned: Set[int] = set()
        self._next_id = 1
        self.abandoned_limit = abandoned_limit

    def __len__(self) -> int:
        """Requests in flight, abandoned ones included."""
        return len(self._entries)

    @property
    def abandoned(self) -> int:
        """How many entries wait for a reply nobody wants."""
        return len(self._abandoned)

    def add(self, slot: S, op: int, tx_id: int) -> int:
        """Registers a request; returns its id (invariants 1 and 2)."""
        entries = self._entries
        rq_id = self._next_id
        while rq_id in entries:
            rq_id = rq_id + 1 if rq_id + 1 < RQ_ID_LIMIT else 1
        entries[rq_id] = [slot, op, tx_id]
        self._next_id = rq_id + 1 if rq_id + 1 < RQ_ID_LIMIT else 1
        return rq_id

    def match(self, reply: Packet
              ) -> Tuple[Optional[S], Optional[UnexpectedPacket]]:
        """Takes the entry ``reply`` answers out of the table.

        Returns ``(slot, None)`` when the reply is the slot's,
        ``(slot, error)`` when it answers the slot's id but cannot be its
        reply (:func:`check_reply`), ``(None, None)`` for the late reply of
        an abandoned request, and ``(None, error)`` for an id nobody sent.
        Not for WATCH_EVENT packets.
        """
        rq_id = reply[1]
        entry = self._entries.pop(rq_id, None)
        if entry is not None:
            slot, op, tx_id = entry
            if slot is not None and reply[0] == op and reply[2] == tx_id:
                return slot, None  # the common case, first
        elif rq_id == 0:
            entry = self._pop_quirk(reply.op)
        if entry is None:
            return None, UnexpectedPacket(
                "%s reply for unknown request id %d" % (op_name(reply.op),
                                                        rq_id))
        slot, op, tx_id = entry
        if slot is None:
            self._abandoned.discard(rq_id)
            return None, None
        return slot, check_reply(op, tx_id, reply)

    def _pop_quirk(self, op: int) -> Optional[List[Any]]:
        """The oldest WATCH/UNWATCH request an id-0 reply can answer: the
        reply's own op, or either for ERROR. Old xenbus drivers answer
        these in order, without copying the request header."""
        if op not in _QUIRK_OPS and op != _ERROR:
            return None
        for rq_id, entry in list(self._entries.items()):  # an atomic copy
            sent = entry[_OP]
            if sent in _QUIRK_OPS and (op == _ERROR or sent == op):
                if self._entries.pop(rq_id, None) is entry:
                    if entry[_SLOT] is None:
                        self._abandoned.discard(rq_id)
                    return entry
        return None

    def abandon(self, rq_id: int, slot: S) -> bool:
        """Forgets ``slot``'s interest in its reply (invariant 4).

        Returns True when more than ``abandoned_limit`` entries are now
        abandoned: the driver must then fail the connection.
        """
        entry = self._entries.get(rq_id)
        if entry is not None and entry[_SLOT] is slot:
            entry[_SLOT] = None
            self._abandoned.add(rq_id)
            if rq_id not in self._entries:  # match() took it meanwhile
                self._abandoned.discard(rq_id)
        return len(self._abandoned) > self.abandoned_limit

    def fail_all(self) -> List[S]:
        """Empties the table; returns the slots still waiting, oldest
        first, for the driver to fail."""
        entries, self._entries = self._entries, {}
        self._abandoned = set()
        return [entry[_SLOT] for entry in entries.values()
                if entry[_SLOT] is not None]
