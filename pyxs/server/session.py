"""Per-connection state: identity, watches, transactions, queued input and
output, and the per-domain usage all connections of one domain share.

Invariants:

* every :class:`Session` of domain ``d`` is in ``DomainUsage.sessions`` of
  the one :class:`DomainUsage` for ``d`` while it is open, so the quotas
  (watches, transactions, outstanding replies) are counted per domain
  across all of its connections, as they are documented;
* ``DomainUsage.outstanding`` is the number of replies queued on the
  domain's connections and not yet completely written to their sockets;
* the output queue is bounded for events: an event identical to one still
  queued is dropped (as C xenstored 4.17 does), and beyond ``max_events``
  queued events or ``max_event_bytes`` of them (or, for an unprivileged
  domain, ``MAX_DOMAIN_EVENT_BYTES`` over all of its connections) further
  ones are dropped, so a client that never reads cannot make the daemon
  grow without limit
  (replies are bounded by the daemon, which stops reading a domain at its
  outstanding-request quota);
* the input queue holds raw bytes, at most one read's worth beyond the
  packet being decoded, and yields one packet at a time.
"""

from collections import deque
from typing import Deque, Dict, List, Optional, Set, Tuple

from .._internal import HEADER, PAYLOAD_MAX, Op, Packet, encode
from .perms import Who
from .store import Transaction
from .watches import Watch

__all__ = ["Session", "Outbox", "Inbox", "DomainUsage", "MalformedInput"]

#: Queued events per connection before new ones are dropped.
MAX_QUEUED_EVENTS = 2048
#: Bytes of queued events per connection before new ones are dropped.
MAX_QUEUED_EVENT_BYTES = 256 * 1024
#: Bytes of queued events over all connections of one unprivileged domain.
MAX_DOMAIN_EVENT_BYTES = 1 << 20

_EventKey = Tuple[bytes, bytes]
_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from


class MalformedInput(Exception):
    """A client broke the framing; its connection must be closed."""


class DomainUsage:
    """The quota usage of one domain, over all of its connections."""

    __slots__ = ("domid", "sessions", "outstanding", "event_bytes",
                 "event_limit", "_registry")

    def __init__(self, domid: int,
                 registry: Dict[int, "DomainUsage"]) -> None:
        self.domid = domid
        self.sessions: List["Session"] = []
        #: Replies queued and not yet fully sent, on every connection.
        self.outstanding = 0
        #: Bytes of events queued on every connection, and their limit
        #: (None: only the per-connection limits apply, for dom0).
        self.event_bytes = 0
        self.event_limit: Optional[int] = \
            None if domid == 0 else MAX_DOMAIN_EVENT_BYTES
        self._registry = registry

    @classmethod
    def of(cls, domid: int,
           registry: Dict[int, "DomainUsage"]) -> "DomainUsage":
        """The registry's usage record for ``domid``, made if needed."""
        usage = registry.get(domid)
        if usage is None:
            usage = registry[domid] = cls(domid, registry)
        return usage

    def watches(self) -> int:
        """Watches the domain holds on all of its connections."""
        return sum(len(session.watches) for session in self.sessions)

    def transactions(self) -> int:
        """Open transactions of the domain on all of its connections."""
        return sum(len(session.transactions) for session in self.sessions)

    def detach(self, session: "Session") -> None:
        """Forgets a closed connection and the replies it still held."""
        if session in self.sessions:
            self.sessions.remove(session)
            self.outstanding -= session.outbox.replies
            session.outbox.replies = 0
            self.event_bytes -= session.outbox.event_bytes
            session.outbox.event_bytes = 0
        if not self.sessions and self._registry.get(self.domid) is self:
            del self._registry[self.domid]


class Inbox:
    """Bytes received on one connection, handed out one packet at a time."""

    __slots__ = ("_data", "_offset")

    def __init__(self) -> None:
        self._data = b""
        self._offset = 0  # where the next packet starts in _data

    def __len__(self) -> int:
        return len(self._data) - self._offset

    def feed(self, data: bytes) -> None:
        """Appends received bytes."""
        if self._offset == len(self._data):
            self._data = data
        else:
            self._data = self._data[self._offset:] + data
        self._offset = 0

    def ready(self) -> bool:
        """Whether a whole packet (or a framing error) is buffered."""
        data, offset = self._data, self._offset
        if len(data) - offset < _HEADER_SIZE:
            return False
        size: int = _unpack_header(data, offset)[3]
        return size > PAYLOAD_MAX or len(data) - offset >= _HEADER_SIZE + size

    def next(self) -> Optional[Packet]:
        """The next whole packet, or None; MalformedInput for a header
        claiming more than 4096 payload bytes (C xenstored then drops the
        connection, and so does the daemon)."""
        data, offset = self._data, self._offset
        if len(data) - offset < _HEADER_SIZE:
            return None
        op, rq_id, tx_id, size = _unpack_header(data, offset)
        if size > PAYLOAD_MAX:
            raise MalformedInput("packet header claims %d payload bytes, "
                                 "more than the %d allowed"
                                 % (size, PAYLOAD_MAX))
        start = offset + _HEADER_SIZE
        end = start + size
        if len(data) < end:
            return None
        self._offset = end
        return tuple.__new__(Packet, (op, rq_id, tx_id, size,
                                      data[start:end]))


class Outbox:
    """Frames waiting to be sent on one connection."""

    def __init__(self, max_events: int = MAX_QUEUED_EVENTS,
                 usage: Optional[DomainUsage] = None,
                 max_event_bytes: int = MAX_QUEUED_EVENT_BYTES) -> None:
        self.max_events = max_events
        self.max_event_bytes = max_event_bytes
        self.usage = usage
        self._frames: Deque[Tuple[bytes, Optional[_EventKey]]] = deque()
        self._queued_events: Set[_EventKey] = set()
        #: Bytes of the queued events.
        self.event_bytes = 0
        self._sent = 0  # bytes of the head frame already sent
        self.size = 0
        self.dropped = 0
        #: Replies queued and not yet fully sent.
        self.replies = 0

    def __bool__(self) -> bool:
        return bool(self._frames)

    def reply(self, frame: bytes) -> None:
        """Queues a reply; replies are never dropped."""
        self._frames.append((frame, None))
        self.size += len(frame)
        self.replies += 1
        if self.usage is not None:
            self.usage.outstanding += 1

    def event(self, path: bytes, token: bytes) -> bool:
        """Queues a WATCH_EVENT unless a duplicate is queued or it is full."""
        key = (path, token)
        if key in self._queued_events:
            return False
        frame = encode(Op.WATCH_EVENT, 0, 0, path + b"\x00" + token + b"\x00")
        usage = self.usage
        if len(self._queued_events) >= self.max_events or \
                self.event_bytes + len(frame) > self.max_event_bytes or (
                    usage is not None and usage.event_limit is not None
                    and usage.event_bytes + len(frame) > usage.event_limit):
            self.dropped += 1
            return False
        self._queued_events.add(key)
        self._frames.append((frame, key))
        self.size += len(frame)
        self.event_bytes += len(frame)
        if usage is not None:
            usage.event_bytes += len(frame)
        return True

    def head(self) -> memoryview:
        """The unsent bytes of the first frame."""
        return memoryview(self._frames[0][0])[self._sent:]

    def advance(self, count: int) -> None:
        """Marks ``count`` bytes of the head frame as sent."""
        self._sent += count
        self.size -= count
        frame, key = self._frames[0]
        if self._sent == len(frame):
            self._frames.popleft()
            self._sent = 0
            if key is not None:
                self._queued_events.discard(key)
                self.event_bytes -= len(frame)
                if self.usage is not None:
                    self.usage.event_bytes -= len(frame)
            else:
                self.replies -= 1
                if self.usage is not None:
                    self.usage.outstanding -= 1


class Session:
    """One client connection as the protocol layer sees it.

    :param usage: the registry of per-domain usage (one entry per domain,
        shared by every session of that domain); a private one if None.
    """

    def __init__(self, domid: int, targets: Dict[int, int],
                 usage: Optional[Dict[int, DomainUsage]] = None) -> None:
        self.domid = domid
        self._targets = targets
        self.home = b"/local/domain/%d/" % domid
        self.watches: List[Watch] = []
        self.transactions: Dict[int, Transaction] = {}
        self.next_tx_id = 1
        #: Every connection of this domain, and what they hold together.
        self.usage = DomainUsage.of(domid, {} if usage is None else usage)
        self.outbox = Outbox(usage=self.usage)
        self.usage.sessions.append(self)
        #: Set when the daemon should drop this connection (its domain
        #: was released).
        self.closing = False

    @property
    def who(self) -> Who:
        """The identity requests on this connection run as."""
        return Who(self.domid, self._targets.get(self.domid))

    def new_tx_id(self) -> int:
        """The next free transaction id (uint32, never 0)."""
        while True:
            tx_id = self.next_tx_id
            self.next_tx_id = (tx_id + 1) & 0xFFFFFFFF or 1
            if tx_id not in self.transactions:
                return tx_id

    def close(self) -> None:
        """Leaves the domain's usage (called once the connection is gone)."""
        self.usage.detach(self)

    def __repr__(self) -> str:
        return "Session(domid=%d, watches=%d, transactions=%d)" % (
            self.domid, len(self.watches), len(self.transactions))
