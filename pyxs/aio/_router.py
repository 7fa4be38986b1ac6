"""The asyncio driver of one XenStore connection: no thread, the event loop.

The connection's descriptor is watched with ``loop.add_reader``; each time
it is readable the bytes are read, decoded, and every reply completes the
future its request waits on, through the same
:class:`~pyxs._pending.PendingTable` the threaded router uses (request ids,
the one reply check, abandoned requests). Watch events go to monitors
through :class:`~pyxs._fanout.WatchFanout`. Requests are written at once
when the descriptor takes them, those made in the same turn of the loop
together (the first at once, the others in one write at the turn's end);
what the descriptor does not take waits in an output queue sent by a
``loop.add_writer`` callback, in order.

Invariants:

- Everything runs on the loop's thread; nothing here blocks.
- A request's future is completed exactly once: by its reply, by the
  connection's end (every waiter fails at once with a copy of the cause),
  or by its caller giving up (timeout, cancellation), which abandons the
  request: its late reply is recognised and dropped.
- Over XenBus every packet is written by a write of its own (Linux's
  device takes one message per write).
"""

import asyncio
import logging
import os
import socket
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from .._fanout import WatchFanout
from .._internal import (
    HEADER,
    NUL,
    PAYLOAD_MAX,
    Op,
    Packet,
    new_event,
)
from .._pending import PendingTable
from ..connection import (
    FileDescriptorConnection,
    UnixSocketConnection,
    XenBusConnection,
    connect_failure,
    write_failure,
)
from ..exceptions import (
    ConnectionError,
    InvalidPayload,
    PyXSError,
    TimeoutError,
)
from ..exceptions import copy_error as _copy

__all__ = ["AsyncRouter"]

log = logging.getLogger("pyxs.aio")

_WATCH_EVENT = int(Op.WATCH_EVENT)


def _time_out(future: "asyncio.Future[Packet]", timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no reply within %g s" % timeout))


class AsyncRouter:
    """Multiplexes one connection between coroutines on one event loop.

    :param connection: a :class:`~pyxs.connection.UnixSocketConnection` or
        :class:`~pyxs.connection.XenBusConnection`, owned by the router.
    """

    def __init__(self, connection: FileDescriptorConnection) -> None:
        self.connection = connection
        self.payload_max: int = min(PAYLOAD_MAX, getattr(
            connection, "payload_max", PAYLOAD_MAX))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._pending: "PendingTable[asyncio.Future[Packet]]" = \
            PendingTable()
        self._fanout = WatchFanout()
        self._out: Deque[memoryview] = deque()  # unsent, in order
        self._writing = False  # add_writer is installed
        self._batch: List[bytes] = []  # requests of this turn of the loop
        self._combining = False  # a _flush() is scheduled
        self._per_packet = isinstance(connection, XenBusConnection)
        self._fd = -1
        #: The connection's writer() once started (one bound call a write).
        self._raw_write: Callable[[Any], int] = connection._write
        self._failure: Optional[PyXSError] = None
        self._started = False

    def __repr__(self) -> str:
        return "AsyncRouter(%r)" % (self.connection,)

    @property
    def is_connected(self) -> bool:
        return self._started and self._failure is None

    # -- life cycle ---------------------------------------------------------

    async def start(self, timeout: Optional[float] = None) -> None:
        """Opens the connection on the running loop; idempotent."""
        if self._started:
            if self._failure is not None:
                raise ConnectionError(
                    "this connection is closed: %s" % self._failure)
            return
        loop = asyncio.get_running_loop()
        connection = self.connection
        if isinstance(connection, UnixSocketConnection):
            await _connect_socket(loop, connection, timeout)
        else:
            connection.connect(timeout)  # opening a device never blocks
        self._fd = fd = connection.fileno()
        self._raw_write = connection.writer()
        os.set_blocking(fd, False)
        self._loop = loop
        self._started = True
        loop.add_reader(fd, self._on_readable)

    def close(self, reason: str = "the client was closed") -> None:
        """Closes the connection; every waiter fails. Idempotent."""
        self._fail(ConnectionError(reason))

    def _fail(self, failure: PyXSError) -> None:
        if self._failure is not None:
            return
        self._failure = failure
        loop = self._loop
        if loop is not None and self._fd >= 0 and not loop.is_closed():
            loop.remove_reader(self._fd)
            if self._writing:
                loop.remove_writer(self._fd)
        self._writing = False
        self._out.clear()
        self._batch.clear()
        self.connection.close()
        for future in self._pending.fail_all():
            if not future.done():
                future.set_exception(_copy(failure))
        for subscriber in self._fanout.everyone():
            subscriber.connection_lost(_copy(failure))
        self._fanout.clear()

    def _unusable(self) -> ConnectionError:
        if not self._started:
            return ConnectionError("the client is not connected; use "
                                   "'async with Client() as c:' or await "
                                   "connect()")
        failure = self._failure
        if isinstance(failure, ConnectionError):
            return ConnectionError(*failure.args)
        return ConnectionError("the connection is closed: %s" % failure)

    # -- requests -----------------------------------------------------------

    def submit_many(self, requests: Sequence[Tuple[int, int, bytes]]
                    ) -> List[Tuple[int, "asyncio.Future[Packet]"]]:
        """Sends ``(op, tx_id, payload)`` requests in one write; returns
        ``(rq_id, future)`` for each, in order. Refuses them all, sending
        nothing, when one is too long or the connection is unusable."""
        for op, _, payload in requests:
            self._check(op, payload)
        chunks = []
        sent = []
        for op, tx_id, payload in requests:
            rq_id, future, chunk = self._register(op, tx_id, payload)
            chunks.append(chunk)
            sent.append((rq_id, future))
        alone = len(self._pending) == len(chunks)
        try:
            if self._per_packet:
                for chunk in chunks:
                    self._send(chunk, alone)
            elif chunks:
                self._send(b"".join(chunks), alone)
        except BaseException:  # the write failed: nobody awaits these
            for rq_id, future in sent:
                self.abandon(rq_id, future)
            raise
        return sent

    def _check(self, op: int, payload: bytes) -> None:
        """Refuses a request before anything is registered or sent."""
        if len(payload) > self.payload_max:
            raise InvalidPayload(payload, "exceeds the %d-byte limit of %s"
                                 % (self.payload_max,
                                    type(self.connection).__name__), op=op)
        if self._failure is not None or not self._started:
            raise self._unusable()

    def _register(self, op: int, tx_id: int, payload: bytes
                  ) -> Tuple[int, "asyncio.Future[Packet]", bytes]:
        """A request's id, future and frame (checked by :meth:`_check`)."""
        loop = self._loop
        assert loop is not None
        future: "asyncio.Future[Packet]" = loop.create_future()
        rq_id = self._pending.add(future, op, tx_id)
        return rq_id, future, HEADER.pack(op, rq_id, tx_id,
                                          len(payload)) + payload

    async def call(self, op: int, tx_id: int, payload: bytes,
                   timeout: Optional[float] = None) -> Packet:
        """Sends one request and waits for its reply (the pending table
        has checked its op and transaction)."""
        self._check(op, payload)
        rq_id, future, chunk = self._register(op, tx_id, payload)
        try:
            self._send(chunk, len(self._pending) == 1)
        except BaseException:  # the write failed: nobody awaits it
            self.abandon(rq_id, future)
            raise
        return await self.wait(rq_id, future, timeout)

    async def wait(self, rq_id: int, future: "asyncio.Future[Packet]",
                   timeout: Optional[float] = None) -> Packet:
        """Waits for a reply; on timeout or cancellation, abandons the
        request so that its late reply is dropped."""
        handle = None
        if timeout is not None and not future.done():
            assert self._loop is not None
            handle = self._loop.call_later(max(timeout, 0), _time_out,
                                           future, timeout)
        try:
            return await future
        except BaseException:
            self.abandon(rq_id, future)
            raise
        finally:
            if handle is not None:
                handle.cancel()

    def abandon(self, rq_id: int, future: "asyncio.Future[Packet]") -> None:
        """Drops the interest of ``future`` in its reply."""
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # nobody will: asyncio must not log it
        if self._pending.abandon(rq_id, future):
            self._fail(ConnectionError(
                "more than %d requests got no reply; the daemon does not "
                "answer" % self._pending.abandoned_limit))

    # -- watches ------------------------------------------------------------

    def attach(self, subscriber: Any) -> None:
        """Tells ``subscriber`` (``connection_lost``) of the end."""
        if self._failure is not None:
            subscriber.connection_lost(_copy(self._failure))
        else:
            self._fanout.attach(subscriber)

    def subscribe(self, token: bytes, subscriber: Any) -> None:
        self._fanout.subscribe(token, subscriber)

    def unsubscribe(self, token: bytes, subscriber: Any) -> None:
        self._fanout.unsubscribe(token, subscriber)

    # -- I/O callbacks --------------------------------------------------------

    def _send(self, data: bytes, alone: bool) -> None:
        """Writes ``data`` now, or with the other requests made in the
        same turn of the loop (write combining: the first goes out at
        once, the rest in one write when the turn ends). ``alone``: no
        other request is in flight, so no other is likely to follow in
        this turn: nothing to combine."""
        if self._combining:
            self._batch.append(data)
            return
        self._write(data)
        if not alone:
            self._combining = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Writes what this turn of the loop queued."""
        self._combining = False
        batch, self._batch = self._batch, []
        if not batch or self._failure is not None:
            return
        try:
            if self._per_packet:  # one packet per write on XenBus
                for data in batch:
                    self._write(data)
            else:
                self._write(batch[0] if len(batch) == 1 else
                            b"".join(batch))
        except ConnectionError:
            pass  # the waiters got it

    def _write(self, data: bytes) -> None:
        """Writes ``data``, or queues it behind unsent bytes; what the
        descriptor does not take waits for it to become writable."""
        if self._out:
            self._out.append(memoryview(data))
            return
        try:
            written = self._raw_write(data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._fail(write_failure(self.connection.path, exc))
            raise self._unusable() from None
        if written < len(data):
            self._out.append(memoryview(data)[written:])
            self._want_write()

    def _want_write(self) -> None:
        if not self._writing and self._loop is not None:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        out = self._out
        try:
            while out:
                written = self._raw_write(out[0])
                if written < len(out[0]):
                    out[0] = out[0][written:]
                    return
                out.popleft()
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(write_failure(self.connection.path, exc))
            return
        self._writing = False
        assert self._loop is not None
        self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        connection = self.connection
        try:
            connection.fill()
            packets = connection.parse()
        except PyXSError as exc:
            self._fail(exc)
            return
        match = self._pending.match
        for packet in packets:
            if packet.op == _WATCH_EVENT:
                self._deliver(packet)
                continue
            future, refusal = match(packet)
            if future is None or future.done():
                if refusal is not None:  # late replies are dropped quietly
                    log.warning("dropped a %s", refusal)
            elif refusal is None:
                future.set_result(packet)
            else:
                future.set_exception(refusal)

    def _deliver(self, packet: Packet) -> None:
        parts = packet.payload.split(NUL)
        if len(parts) < 2:
            log.warning("dropped a malformed watch event %r", packet)
            return
        event = new_event((parts[0], parts[1]))  # one C call
        for subscriber in self._fanout.route(event):
            subscriber.deliver(event)


async def _connect_socket(loop: asyncio.AbstractEventLoop,
                          connection: UnixSocketConnection,
                          timeout: Optional[float]) -> None:
    """Connects the socket without blocking the loop.

    A Unix socket whose listener does not accept (a stopped daemon, a full
    backlog) refuses a non-blocking connect with EAGAIN and offers nothing
    to wait on: the attempt repeats, with a growing pause, until
    ``timeout``.
    """
    if connection.fd is not None:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    deadline = None if timeout is None else loop.time() + timeout
    pause = 0.001
    try:
        while True:
            try:
                sock.connect(connection.path)
                break
            except BlockingIOError:
                if deadline is not None and loop.time() >= deadline:
                    raise TimeoutError(
                        "cannot connect to XenStore at %s: no answer within "
                        "%g s" % (connection.path, timeout or 0)) from None
                await asyncio.sleep(pause)  # nothing to wait on: retry
                pause = min(pause * 2, 0.05)
    except TimeoutError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise connect_failure(connection.path, exc) from exc
    except BaseException:
        sock.close()
        raise
    connection._socket = sock
    connection.fd = sock.fileno()
