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

import errno
import itertools
from collections import deque
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ._internal import NUL, Op, Packet
from ._replies import check_reply, error_reply
from ._replies import listing as listing_names
from .exceptions import PyXSError, UnexpectedPacket

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


Requests = Tuple[Any, Any]  # the RVars of a node's READ and DIRECTORY
_ERROR = int(Op.ERROR)


def ready_node(requests: Requests) -> Optional[Node]:
    """The node from its two replies when both are in and plainly good;
    None when the caller must wait or handle an error. (The router's
    pending table has checked the replies' op and transaction.)"""
    value_rvar, listing_rvar = requests
    if listing_rvar.done() and value_rvar.done():
        listing, value = listing_rvar._value, value_rvar._value
        if listing is not None and value is not None and \
                listing.op == _DIRECTORY and value.op == _READ:
            try:
                return value.payload, listing_names(listing.payload,
                                                    _DIRECTORY)
            except UnexpectedPacket:
                return None  # the caller's slow path reports it, with path
    return None


class TreeWalk:
    """One walk over one router; iterate :meth:`run`.

    :param router: a :class:`~pyxs.router.Router`, or any object with
        pyxs 0.4's ``send(packet) -> RVar`` (requests then go one by one).
    :param list_children: lists a directory too long for one DIRECTORY
        reply (the client's ``list``, which reads it in parts).
    """

    __slots__ = ("router", "tx_id", "timeout", "list_children", "topdown",
                 "stack", "in_flight")

    def __init__(self, router: Any, tx_id: int, timeout: Optional[float],
                 list_children: Callable[[bytes], List[bytes]],
                 topdown: bool) -> None:
        self.router = router
        self.tx_id = tx_id
        self.timeout = timeout
        self.list_children = list_children
        self.topdown = topdown
        self.stack: List[List[Any]] = []
        self.in_flight = 0

    def request(self, paths: List[bytes]) -> List[Requests]:
        """Sends a READ and a DIRECTORY for each path, in one write."""
        tx_id = self.tx_id
        router = self.router
        submit_many = getattr(router, "submit_many", None)
        if submit_many is None:  # a pyxs 0.4 style router: one at a time
            return [(router.send(Packet(_READ, path + NUL, 0, tx_id)),
                     router.send(Packet(_DIRECTORY, path + NUL, 0, tx_id)))
                    for path in paths]
        requests = []
        for path in paths:
            payload = path + NUL
            requests.append((_READ, tx_id, payload))
            requests.append((_DIRECTORY, tx_id, payload))
        rvars = submit_many(requests)
        return list(zip(rvars[::2], rvars[1::2]))

    def node(self, path: bytes, requests: Requests) -> Optional[Node]:
        """The ``(value, children)`` of a node from its requests, waiting
        for the replies; None if the node vanished."""
        node = ready_node(requests)
        if node is not None:
            return node
        value_rvar, listing_rvar = requests
        try:
            try:
                children = listing_names(
                    self._payload(_DIRECTORY, listing_rvar, path),
                    _DIRECTORY, path)
            except PyXSError as exc:
                if exc.args[0] != errno.E2BIG:
                    raise
                children = self.list_children(path)
        except PyXSError as exc:
            if exc.args[0] == errno.ENOENT:
                return None  # removed while we walked
            raise
        try:
            value = self._payload(_READ, value_rvar, path)
        except PyXSError as exc:
            if exc.args[0] not in (errno.ENOENT, errno.EACCES):
                raise
            value = b""
        return value, children

    def _payload(self, op: int, rvar: Any, path: bytes) -> bytes:
        reply: Packet = rvar.get(self.timeout)
        refusal = check_reply(op, self.tx_id, reply)
        if refusal is not None:
            raise refusal.with_context(None, path)
        if reply.op == _ERROR:
            raise error_reply(reply.payload, op, path)
        return reply.payload

    def run(self, top: bytes, node: Node
            ) -> Iterator[Tuple[bytes, bytes, List[bytes]]]:
        """Yields ``(path, value, children)`` for ``top`` (whose ``node``
        the caller fetched) and everything below it."""
        topdown = self.topdown
        stack = self.stack
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
                fetched = self.node(path, requests)
                if fetched is None:
                    continue  # removed while we walked
                value, children = fetched
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
        frame: List[Any] = [path, value, children, iter(list(children)),
                            deque(), None, prefix, 0]
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
            pairs = self.request([prefix + name for name in batch])
            ahead.extend([name, requests, None]
                         for name, requests in zip(batch, pairs))
            self.in_flight += len(batch)

    def _look_ahead(self) -> None:
        """Settles entries whose replies are in, deepest frame first (they
        come soonest in walk order), requesting their children, until the
        budget is spent or an entry's replies are still on their way."""
        for frame in reversed(self.stack):
            wanted = frame[_WANTED]
            prefix = frame[_PREFIX]
            for entry in itertools.islice(frame[_AHEAD], frame[_SCANNED],
                                          None):
                if entry[2] is None:
                    name = entry[0]
                    if wanted is None or name in wanted:
                        node = ready_node(entry[1])
                        if node is None:
                            break  # not in yet (or an error: left to visit)
                        value, children = node
                        sub = self._frame(prefix + name, value, children) \
                            if children else None
                        entry[2] = (value, children, sub)
                frame[_SCANNED] += 1
                if self.in_flight >= BUDGET:
                    return
