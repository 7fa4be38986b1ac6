"""Watch events of :mod:`pyxs._compat`: any object as token, select-able.

:class:`EventSink` takes the events of one ``xs`` handle's watches from the
router and hands them to ``read_watch()`` (blocking) and ``check_watch()``
(not blocking). Invariants, all kept under one lock:

* the queue holds only events of watches still set: events of a token are
  dropped on arrival once its last watch is gone, and those already
  queued are removed when it goes;
* the descriptor of :meth:`EventSink.fileno` holds one byte exactly while
  the queue is not empty (or the connection has ended), so it is readable
  exactly when ``check_watch()`` would return something;
* the wire token names the token object (by ``id``, with the watch kept
  alive while it is set) and whether the watch path was bytes, so each
  event comes back in the type its watch was set with.
"""

import socket
import threading
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from ._internal import Event
from .client import Client
from .exceptions import ConnectionError, PyXSError

__all__ = ["EventSink"]

Path = Union[str, bytes]


class EventSink:
    """The watch events of one ``xs`` handle."""

    def __init__(self, client: Client) -> None:
        self._router = client.router
        self._cond = threading.Condition(threading.Lock())
        self._queue: Deque[Tuple[bytes, bytes]] = deque()
        self._tokens: Dict[bytes, List[Any]] = {}  # wire: [token, count]
        self._failure: Optional[PyXSError] = None
        self._pair: Optional[Tuple[socket.socket, socket.socket]] = None
        self._armed = False  # the reader end holds its byte
        self._router.attach(self)

    @staticmethod
    def wire(token: Any, as_bytes: bool) -> bytes:
        """The token sent for ``token`` on a str (or bytes) watch path."""
        return (b"b" if as_bytes else b"s") + b"%d" % id(token)

    def add(self, token: Any, as_bytes: bool) -> bytes:
        """Counts one more watch with ``token``; returns its wire token."""
        wire = self.wire(token, as_bytes)
        with self._cond:
            entry = self._tokens.setdefault(wire, [token, 0])
            entry[1] += 1
            first = entry[1] == 1
        if first:
            self._router.subscribe(wire, self)
        return wire

    def discard(self, wire: bytes) -> None:
        """Counts one watch less; the last one takes the token's queued
        events with it."""
        with self._cond:
            entry = self._tokens.get(wire)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._tokens[wire]
            kept = [item for item in self._queue if item[1] != wire]
            self._queue.clear()
            self._queue.extend(kept)
            self._sync()
        self._router.unsubscribe(wire, self)

    # -- called by the router -------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Queues an event of a token still watched."""
        path, wire = event
        with self._cond:
            if wire in self._tokens:
                self._queue.append((path, wire))
                self._sync()
                self._cond.notify()

    def connection_lost(self, failure: PyXSError) -> None:
        """Records the end of the connection: waiters raise."""
        with self._cond:
            if self._failure is None:
                self._failure = failure
            self._sync()
            self._cond.notify_all()

    # -- called by the handle -------------------------------------------------

    def get(self, block: bool) -> Optional[Tuple[Path, Any]]:
        """The next event as ``(path, token)``: waits for one if ``block``,
        else None when there is none.

        :raises ConnectionError: once the connection has ended.
        """
        with self._cond:
            while not self._queue:
                if self._failure is not None:
                    raise ConnectionError(*self._failure.args)
                if not block:
                    return None
                self._cond.wait()
            path, wire = self._queue.popleft()
            self._sync()
            token = self._tokens[wire][0]
        if wire[:1] == b"b":
            return path, token
        return path.decode("utf-8", "surrogateescape"), token

    def fileno(self) -> int:
        """A descriptor readable exactly while :meth:`get` has something."""
        with self._cond:
            if self._pair is None:
                reader, writer = socket.socketpair()
                reader.setblocking(False)
                writer.setblocking(False)
                self._pair = (reader, writer)
                self._armed = False
                self._sync()
            return self._pair[0].fileno()

    def _sync(self) -> None:
        # Called with the lock held: one byte while anything is pending.
        pair = self._pair
        if pair is None:
            return
        wanted = bool(self._queue) or self._failure is not None
        try:
            if wanted and not self._armed:
                pair[1].send(b"e")
                self._armed = True
            elif not wanted and self._armed:
                pair[0].recv(1)
                self._armed = False
        except OSError:  # closed under us: nothing left to signal
            pass

    def close(self) -> None:
        """Ends delivery: waiters raise, the descriptor closes."""
        with self._cond:
            if self._failure is None:
                self._failure = ConnectionError("the xs handle was closed")
            self._tokens.clear()
            self._queue.clear()
            pair, self._pair = self._pair, None
            self._cond.notify_all()
        if pair is not None:
            for end in pair:
                end.close()
