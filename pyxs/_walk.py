"""Client.walk(): a depth-first walk that keeps many requests in flight.

Every node costs two requests (READ and DIRECTORY), and a walk one round
trip at a time spends most of its time waiting. Here the children of each
directory being walked are requested in batches (one write each), and
whenever the walk enters a directory it also looks ahead: directories
further on in the walk whose listings have already arrived get their own
children requested at once, up to a budget of nodes in flight. The daemon
then always has work queued, and the walk seldom waits.

Nodes are still visited in :func:`os.walk` order, and with ``topdown`` the
caller may prune by removing names from ``children``: the look-ahead never
goes below a name the caller removed, and what it fetched for nodes pruned
later is dropped.
"""

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

from ._internal import Op
from ._replies import listing as listing_names
from .exceptions import UnexpectedPacket

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

WINDOW = 64   # children of one directory requested ahead, per frame
BUDGET = 256  # nodes requested and not yet visited, for the whole walk

Node = Tuple[bytes, List[bytes]]  # (value, children)
_READ = int(Op.READ)
_DIRECTORY = int(Op.DIRECTORY)

# A frame is a directory on the walk's stack, as a list:
_PATH, _VALUE, _CHILDREN, _NAMES, _AHEAD, _WANTED, _PREFIX, _SCANNED = \
    range(8)
# _NAMES: iterator of the names not requested yet (None once all were);
# _AHEAD: deque of [name, requests, looked-ahead] entries, in walk order;
# _WANTED: the names the caller left in children (topdown), else None;
# _SCANNED: how many leading _AHEAD entries the look-ahead settled.
# looked-ahead: None (not yet), or (value, children, frame or None for a
# leaf).


def ready_node(requests: Tuple[Any, Any], tx_id: int) -> Optional[Node]:
    """The node from its two replies when both are in and plainly good;
    None when the caller must wait or handle an error."""
    value_rvar, listing_rvar = requests
    if listing_rvar._done and value_rvar._done:
        listing, value = listing_rvar._value, value_rvar._value
        if listing is not None and value is not None and \
                listing.op == _DIRECTORY and value.op == _READ and \
                listing.tx_id == tx_id == value.tx_id:
            try:
                return value.payload, listing_names(listing.payload,
                                                    _DIRECTORY)
            except UnexpectedPacket:
                return None  # the caller's slow path reports it, with path
    return None


class TreeWalk:
    """One walk of one client; iterate :meth:`run`."""

    __slots__ = ("client", "topdown", "stack", "in_flight")

    def __init__(self, client: "Client", topdown: bool) -> None:
        self.client = client
        self.topdown = topdown
        self.stack: List[List[Any]] = []
        self.in_flight = 0

    def run(self, top: bytes, node: Node
            ) -> Iterator[Tuple[bytes, bytes, List[bytes]]]:
        """Yields ``(path, value, children)`` for ``top`` (whose ``node``
        the caller fetched) and everything below it."""
        topdown = self.topdown
        stack = self.stack
        client = self.client
        half = WINDOW // 2
        value, children = node
        frame = self._frame(top, value, children)
        if topdown:
            yield top, value, children
            frame[_WANTED] = set(children)  # what the caller left
        stack.append(frame)
        while stack:
            frame = stack[-1]
            ahead = frame[_AHEAD]
            if not ahead:
                stack.pop()
                if not topdown:
                    yield frame[_PATH], frame[_VALUE], frame[_CHILDREN]
                continue
            name, requests, seen = ahead.popleft()
            self.in_flight -= 1
            if frame[_SCANNED]:
                frame[_SCANNED] -= 1
            if len(ahead) <= half and frame[_NAMES] is not None:
                self._top_up(frame)
            wanted = frame[_WANTED]
            if wanted is not None and name not in wanted:
                continue  # pruned by the caller
            path = frame[_PREFIX] + name
            if seen is None:
                node = client._node(path, requests)
                if node is None:
                    continue  # removed while we walked
                value, children = node
                sub = self._frame(path, value, children) if children \
                    else None
            else:
                value, children, sub = seen
            if sub is None:  # a leaf
                yield path, value, children
                continue
            if topdown:
                yield path, value, children
                sub[_WANTED] = set(children)
            stack.append(sub)
            if self.in_flight < BUDGET:
                self._look_ahead()

    def _frame(self, path: bytes, value: bytes, children: List[bytes]
               ) -> List[Any]:
        prefix = path if path.endswith(b"/") else path + b"/"
        frame = [path, value, children, iter(list(children)), deque(),
                 None, prefix, 0]
        self._top_up(frame)
        return frame

    def _top_up(self, frame: List[Any]) -> None:
        """Requests the frame's next children, one write for the batch."""
        ahead = frame[_AHEAD]
        room = WINDOW - len(ahead)
        batch = list(itertools.islice(frame[_NAMES], room))
        if len(batch) < room:
            frame[_NAMES] = None  # every name is requested
        if batch:
            prefix = frame[_PREFIX]
            pairs = self.client._request_nodes([prefix + name
                                                for name in batch])
            ahead.extend([name, requests, None]
                         for name, requests in zip(batch, pairs))
            self.in_flight += len(batch)

    def _look_ahead(self) -> None:
        """Settles entries whose replies are in, deepest frame first (they
        come soonest in walk order), requesting their children, until the
        budget is spent or an entry's replies are still on their way."""
        tx_id = self.client.tx_id
        for frame in reversed(self.stack):
            wanted = frame[_WANTED]
            prefix = frame[_PREFIX]
            for entry in itertools.islice(frame[_AHEAD], frame[_SCANNED],
                                          None):
                if entry[2] is None:
                    name = entry[0]
                    if wanted is None or name in wanted:
                        node = ready_node(entry[1], tx_id)
                        if node is None:
                            break  # not in yet (or an error: left to visit)
                        value, children = node
                        sub = self._frame(prefix + name, value, children) \
                            if children else None
                        entry[2] = (value, children, sub)
                frame[_SCANNED] += 1
                if self.in_flight >= BUDGET:
                    return
