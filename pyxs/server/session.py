"""Per-connection state: identity, watches, transactions and queued output.

The output queue is bounded: an event identical to one still queued is
dropped (as C xenstored 4.17 does), and beyond ``max_events`` queued events
further ones are dropped too, so a client that never reads cannot make the
daemon grow without limit.
"""

from collections import deque
from typing import Deque, Dict, List, Optional, Set, Tuple

from .._internal import Op, encode
from .perms import Who
from .store import Transaction
from .watches import Watch

__all__ = ["Session", "Outbox"]

#: Queued events per connection before new ones are dropped.
MAX_QUEUED_EVENTS = 2048


class Outbox:
    """Frames waiting to be sent on one connection."""

    def __init__(self, max_events: int = MAX_QUEUED_EVENTS) -> None:
        self.max_events = max_events
        self._frames: Deque[Tuple[bytes, Optional[tuple]]] = deque()
        self._queued_events: Set[tuple] = set()
        self._sent = 0  # bytes of the head frame already sent
        self.size = 0
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self._frames)

    def reply(self, frame: bytes) -> None:
        """Queues a reply; replies are never dropped."""
        self._frames.append((frame, None))
        self.size += len(frame)

    def event(self, path: bytes, token: bytes) -> bool:
        """Queues a WATCH_EVENT unless a duplicate is queued or it is full."""
        key = (path, token)
        if key in self._queued_events:
            return False
        if len(self._queued_events) >= self.max_events:
            self.dropped += 1
            return False
        frame = encode(Op.WATCH_EVENT, 0, 0, path + b"\x00" + token + b"\x00")
        self._queued_events.add(key)
        self._frames.append((frame, key))
        self.size += len(frame)
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


class Session:
    """One client connection as the protocol layer sees it."""

    def __init__(self, domid: int, targets: Dict[int, int]) -> None:
        self.domid = domid
        self._targets = targets
        self.home = b"/local/domain/%d/" % domid
        self.watches: List[Watch] = []
        self.transactions: Dict[int, Transaction] = {}
        self.next_tx_id = 1
        self.outbox = Outbox()
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

    def __repr__(self) -> str:
        return "Session(domid=%d, watches=%d, transactions=%d)" % (
            self.domid, len(self.watches), len(self.transactions))
