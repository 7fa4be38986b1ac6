"""``pyxs.aio.Client.walk()``: the tree in :func:`os.walk` order, pipelined.

Each node costs a READ and a DIRECTORY. When the walk enters a directory it
requests the nodes of up to :data:`AHEAD` of its children in one write, and
tops that up as it goes, so the daemon always has work queued. A child's
own children are requested only once the caller has seen the child (with
``topdown``), so a name the caller removed from ``children`` is never
fetched. Nodes that vanish during the walk are skipped; an unreadable value
is reported as ``b""``, as :meth:`pyxs.Client.walk` does.

Invariant: when the walk ends, early or not, no request of it is left in
flight with anybody waiting (the rest are abandoned).
"""

import errno
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Deque,
    Iterator,
    List,
    Optional,
    Tuple,
)

from .. import _requests as R
from .._replies import listing as listing_names
from ..exceptions import PyXSError
from ..helpers import error

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client

__all__ = ["walk", "AHEAD"]

#: Children of one directory whose nodes are in flight at once.
AHEAD = 64

Node = Tuple[bytes, List[bytes]]
Sent = List[Tuple[int, Any]]  # (rq_id, future) of a READ and a DIRECTORY


class _Frame:
    """A directory being walked."""

    __slots__ = ("path", "value", "children", "names", "ahead")

    def __init__(self, path: bytes, value: bytes,
                 children: List[bytes]) -> None:
        self.path = path
        self.value = value
        self.children = children
        self.names: Iterator[bytes] = iter(list(children))
        self.ahead: Deque[Tuple[bytes, Sent]] = deque()

    def child(self, name: bytes) -> bytes:
        return (self.path if self.path != b"/" else b"") + b"/" + name


def _request(client: "Client", paths: List[bytes]) -> List[Sent]:
    tx_id = client.tx_id
    requests = []
    for path in paths:
        payload = path + b"\x00"
        requests.append((R.READ, tx_id, payload))
        requests.append((R.DIRECTORY, tx_id, payload))
    sent = client.router.submit_many(requests)
    return [sent[i:i + 2] for i in range(0, len(sent), 2)]


async def _node(client: "Client", path: bytes, sent: Sent
                ) -> Optional[Node]:
    """The ``(value, children)`` of a node; None if it vanished."""
    router = client.router
    (value_id, value_future), (list_id, list_future) = sent
    try:
        listing = await router.wait(list_id, list_future, client.timeout)
        value_reply = await router.wait(value_id, value_future,
                                        client.timeout)
    except BaseException as exc:
        router.abandon(value_id, value_future)  # a no-op once it is done
        if isinstance(exc, PyXSError) and exc.op is None:
            exc.with_context("DIRECTORY", path)
        raise
    if listing.op == R.DIRECTORY:
        children = listing_names(listing.payload, R.DIRECTORY, path)
    else:
        failure = R.failure(R.Request(R.DIRECTORY, b"", path), listing.op,
                            listing.payload)
        if failure.args[0] == errno.ENOENT:
            return None  # removed while we walked
        if failure.args[0] != errno.E2BIG:
            raise failure
        try:
            children = await client.list(path)  # in parts
        except PyXSError as exc:
            if exc.args[0] == errno.ENOENT:
                return None
            raise
    if value_reply.op == R.READ:
        return value_reply.payload, children
    failure = R.failure(R.Request(R.READ, b"", path), value_reply.op,
                        value_reply.payload)
    if failure.args[0] not in (errno.ENOENT, errno.EACCES):
        raise failure
    return b"", children


def _top_up(client: "Client", frame: _Frame) -> None:
    if len(frame.ahead) > AHEAD // 2:
        return
    paths = []
    for name in frame.names:
        paths.append(frame.child(name))
        if len(frame.ahead) + len(paths) >= AHEAD:
            break
    if paths:
        frame.ahead.extend(zip(paths, _request(client, paths)))


async def walk(client: "Client", top: bytes, topdown: bool
               ) -> AsyncIterator[Tuple[bytes, bytes, List[bytes]]]:
    """The walk itself; ``top`` is validated."""
    stack: List[_Frame] = []
    try:
        node = await _node(client, top, _request(client, [top])[0])
        if node is None:  # unlike a vanished child, a missing top is an error
            raise error(errno.ENOENT).with_context("DIRECTORY", top)
        value, children = node
        if topdown:
            yield top, value, children
        stack.append(_Frame(top, value, children))
        while stack:
            frame = stack[-1]
            _top_up(client, frame)
            if not frame.ahead:
                stack.pop()
                if not topdown:
                    yield frame.path, frame.value, frame.children
                continue
            path, sent = frame.ahead.popleft()
            node = await _node(client, path, sent)
            if node is None:
                continue
            value, children = node
            if topdown:
                yield path, value, children
            if children:
                stack.append(_Frame(path, value, children))
            elif not topdown:
                yield path, value, children
    finally:
        router = client.router
        for frame in stack:
            for _, sent in frame.ahead:
                for rq_id, future in sent:
                    router.abandon(rq_id, future)
