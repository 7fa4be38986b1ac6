"""The router: one background thread that reads replies for many callers.

Callers write their own requests (under a lock, no hand-off to another
thread) and block on an :class:`RVar`; the router thread reads the
connection, completes the RVar whose request id the reply carries, and hands
watch events to the monitors subscribed to their token. A socketpair wakes
the thread when the router is terminated.
"""

import logging
import os
import select
import socket
import threading
import weakref
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ._internal import NUL, PAYLOAD_MAX, Event, Op, Packet, encode, op_name
from .connection import FileDescriptorConnection
from .exceptions import (
    ConnectionError,
    InvalidPayload,
    PyXSError,
    TimeoutError,
    UnexpectedPacket,
)

__all__ = ["Router", "RVar"]

log = logging.getLogger("pyxs.router")

_RQ_ID_LIMIT = 2 ** 32
_QUIRK_OPS = (Op.WATCH, Op.UNWATCH)  # old xenbus answers these with rq_id 0
_ABANDONED = None  # a pending slot whose caller gave up waiting

_routers: "weakref.WeakSet[Router]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for router in list(_routers):
        router._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RVar:
    """A slot for one reply: one writer, any number of waiters.

    Behaves like a minimal :class:`concurrent.futures.Future`: :meth:`get`
    blocks until :meth:`set` or :meth:`set_exception` was called, or the
    timeout expires. A bare lock, held until the value arrives, is the
    cheapest blocking primitive Python has, and a request needs exactly one.
    """

    __slots__ = ("_ready", "_value", "_error", "_done", "rq_id", "router")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self.rq_id: Optional[int] = None
        self.router: Optional[Router] = None

    def set(self, value: Any) -> None:
        """Stores the result and wakes every waiter."""
        self._value = value
        self._finish()

    def set_exception(self, error: BaseException) -> None:
        """Stores an error that :meth:`get` will raise."""
        self._error = error
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._ready.release()

    def done(self) -> bool:
        """True once a result or an error is stored."""
        return self._done

    def get(self, timeout: Optional[float] = None) -> Any:
        """Waits for the result; raises the stored error, or
        :class:`pyxs.exceptions.TimeoutError` after ``timeout`` seconds."""
        if not self._done:
            try:
                if not self._ready.acquire(True, -1 if timeout is None
                                           else max(timeout, 0)):
                    raise TimeoutError("no reply within %g s" % timeout)
            except BaseException:
                # Timed out or interrupted: a late reply will be dropped.
                if self.router is not None and not self._done:
                    self.router._abandon(self)
                raise
            self._ready.release()  # let any other waiter through
        if self._error is not None:
            raise self._error
        return self._value


class Router:
    """Multiplexes one connection between clients and monitors.

    :param connection: a :class:`~pyxs.connection.UnixSocketConnection` or
        :class:`~pyxs.connection.XenBusConnection`, owned by the router: it
        is opened by :meth:`start` and closed by :meth:`terminate`.
    """

    def __init__(self, connection: FileDescriptorConnection) -> None:
        self.connection = connection
        # Created now so that ``thread.is_alive()`` works before start().
        self.thread = threading.Thread(target=self._run, name="pyxs-router",
                                       daemon=True)
        self._started = False
        self._lock = threading.Lock()  # guards writes and the pending table
        self._pending: Dict[int, Any] = {}
        self._next_rq_id = 1
        self._subscribers: Dict[bytes, Set[Any]] = {}
        # Every monitor on this router, watching or not, learns of its end.
        self._monitors: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._shut_down = False
        self._users = 0
        self._closed = False
        self._failure: Optional[PyXSError] = None
        self._wakeup_r: Optional[socket.socket] = None
        self._wakeup_w: Optional[socket.socket] = None

    # -- life cycle ---------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while the router thread serves the connection."""
        return self._started and not self._closed

    def start(self, timeout: Optional[float] = None) -> None:
        """Opens the connection and starts the thread; idempotent.

        :param timeout: seconds to wait for the daemon to accept.
        """
        with self._lock:
            if self._started or self._closed:
                if self._closed:
                    raise ConnectionError(
                        "this router was terminated%s; create a new one"
                        % self._reason())
                return
            if timeout is None:  # connections written for pyxs 0.4
                self.connection.connect()
            else:
                self.connection.connect(timeout)
            self._wakeup_r, self._wakeup_w = socket.socketpair()
            self._started = True
            _routers.add(self)
            self.thread.start()

    def terminate(self) -> None:
        """Stops the thread and closes the connection; idempotent.

        Requests still waiting for a reply fail with ConnectionError.
        """
        with self._lock:
            already = self._closed
            self._closed = True
            if self._failure is None:
                self._failure = ConnectionError("the router was terminated")
        if not already:
            self._wake()
        if not self._started:
            self._shutdown()
        elif self.thread is not threading.current_thread():
            self.thread.join()

    def acquire(self, timeout: Optional[float] = None) -> None:
        """Registers one more user (a connected client); starts if needed."""
        self.start(timeout)
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """Unregisters a user; the last one out terminates the router."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.terminate()

    def _reason(self) -> str:
        failure = self._failure
        return ": %s" % failure if failure is not None else ""

    def _forked(self) -> None:
        # In a child process the socket is shared with the parent: never
        # touch it, but make every call fail with a clear message.
        self._closed = True
        self._failure = ConnectionError(
            "this XenStore connection belongs to the parent process; "
            "create a new Client after fork()")
        self._lock = threading.Lock()
        self._pending = {}

    # -- requests -----------------------------------------------------------

    def send(self, packet: Packet) -> RVar:
        """Sends a packet; returns the RVar that receives its reply.

        The router assigns the request id, so clients sharing a router never
        collide; the reply is a :class:`~pyxs._internal.Packet`.
        """
        return self.submit(packet.op, packet.tx_id, packet.payload)

    def submit(self, op: int, tx_id: int, payload: bytes) -> RVar:
        """Sends a request built from its parts; the fast path of send()."""
        return self.submit_many(((op, tx_id, payload),))[0]

    def submit_many(self, requests: Sequence[Tuple[int, int, bytes]]
                    ) -> List[RVar]:
        """Sends several ``(op, tx_id, payload)`` requests in one write.

        Returns their RVars, in order. Pipelining helpers such as walk()
        use it to save a system call per request.
        """
        limit = getattr(self.connection, "payload_max", PAYLOAD_MAX)
        for op, _, payload in requests:
            if len(payload) > limit:
                raise InvalidPayload(payload, "exceeds the %d-byte limit of "
                                     "%s" % (limit,
                                             type(self.connection).__name__),
                                     op=op)
        rvars = []
        chunks = []
        with self._lock:
            if self._closed or not self._started:
                raise self._not_usable()
            pending = self._pending
            rq_id = self._next_rq_id
            for op, tx_id, payload in requests:
                while rq_id in pending:
                    rq_id = rq_id + 1 if rq_id + 1 < _RQ_ID_LIMIT else 1
                rvar = RVar()
                rvar.router = self
                rvar.rq_id = rq_id
                pending[rq_id] = (rvar, op, tx_id)
                chunks.append(encode(op, rq_id, tx_id, payload))
                rvars.append(rvar)
                rq_id = rq_id + 1 if rq_id + 1 < _RQ_ID_LIMIT else 1
            self._next_rq_id = rq_id
            try:
                self.connection.send_bytes(
                    chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except BaseException as exc:
                whole = not isinstance(exc, PyXSError) and \
                    getattr(self.connection, "unsent", 1) == 0
                for rvar, (op, tx_id, _) in zip(rvars, requests):
                    if whole:
                        # Interrupted (Ctrl-C) after the packets went out
                        # whole: the stream is intact, replies are dropped.
                        pending[rvar.rq_id] = _abandoned(op, tx_id)
                    else:
                        del pending[rvar.rq_id]
                if whole:
                    raise
                # A half-written packet leaves the stream unusable.
                failure = exc if isinstance(exc, PyXSError) else \
                    ConnectionError("sending %s was interrupted; the "
                                    "connection is closed"
                                    % op_name(requests[0][0]))
                self._closed = True
                self._failure = failure
                self._wake()
                raise
        return rvars

    def _not_usable(self) -> ConnectionError:
        if not self._started and self._failure is None:
            return ConnectionError("the client is not connected; use "
                                   "'with Client() as c:' or call connect()")
        failure = self._failure
        if isinstance(failure, ConnectionError):
            return ConnectionError(*failure.args)
        return ConnectionError("the connection is closed%s" % self._reason())

    def _abandon(self, rvar: RVar) -> None:
        with self._lock:
            entry = self._pending.get(rvar.rq_id, _ABANDONED)
            if entry is not _ABANDONED:
                self._pending[rvar.rq_id] = _abandoned(entry[1], entry[2])

    def _wake(self) -> None:
        if self._wakeup_w is not None:
            try:
                self._wakeup_w.send(b"x")
            except OSError:
                pass

    # -- subscriptions ------------------------------------------------------

    def attach(self, monitor: Any) -> None:
        """Registers a monitor to be told (``_connection_lost``) when the
        connection ends, whether or not it watches anything."""
        with self._lock:
            if not self._shut_down:
                self._monitors.add(monitor)
                return
            failure = self._failure or ConnectionError("connection closed")
        monitor._connection_lost(_copy(failure))

    def subscribe(self, token: bytes, monitor: Any) -> None:
        """Delivers events carrying ``token`` to ``monitor.deliver``."""
        with self._lock:
            self._subscribers.setdefault(token, set()).add(monitor)

    def unsubscribe(self, token: bytes, monitor: Any) -> None:
        """Stops delivering events carrying ``token`` to ``monitor``."""
        with self._lock:
            monitors = self._subscribers.get(token)
            if monitors is not None:
                monitors.discard(monitor)
                if not monitors:
                    del self._subscribers[token]

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        connection = self.connection
        wakeup = self._wakeup_r
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        poller.register(wakeup.fileno(), select.POLLIN)
        wake_fd = wakeup.fileno()
        failure: Optional[PyXSError] = None
        try:
            while not self._closed:
                ready = poller.poll()
                if any(fd == wake_fd for fd, _ in ready):
                    break
                for packet in connection.recv_packets():
                    self._dispatch(packet)
        except PyXSError as exc:
            failure = exc
        except Exception as exc:  # a bug must not leave callers hanging
            log.exception("pyxs router thread failed")
            failure = ConnectionError("router failed: %r" % exc)
        with self._lock:
            self._closed = True
            if self._failure is None:
                self._failure = failure or ConnectionError(
                    "the connection is closed")
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            monitors = set(self._monitors)
            monitors.update(m for ms in self._subscribers.values() for m in ms)
            failure = self._failure or ConnectionError("connection closed")
            self._shut_down = True
        for entry in pending.values():
            if entry is not _ABANDONED and entry[0] is not None:
                entry[0].set_exception(_copy(failure))
        for monitor in monitors:
            monitor._connection_lost(_copy(failure))
        self.connection.close()
        for end in (self._wakeup_r, self._wakeup_w):
            if end is not None:
                end.close()

    def _dispatch(self, packet: Packet) -> None:
        op = packet.op
        if op == Op.WATCH_EVENT:
            self._deliver_event(packet)
            return
        with self._lock:
            entry = self._pending.pop(packet.rq_id, False)
            if entry is False and packet.rq_id == 0 and \
                    op in _QUIRK_OPS + (Op.ERROR,):
                entry = self._pop_quirk(op)
        if entry is False:
            log.warning("dropped a %s reply for unknown request id %d",
                        op_name(op), packet.rq_id)
            return
        if entry is _ABANDONED or entry[0] is None:
            return
        rvar, sent_op, tx_id = entry
        if op != sent_op and op != Op.ERROR:
            rvar.set_exception(UnexpectedPacket(
                "%s request %d got a %s reply" % (
                    op_name(sent_op), packet.rq_id, op_name(op))))
        elif packet.tx_id != tx_id and sent_op != Op.TRANSACTION_START \
                and packet.rq_id != 0:
            rvar.set_exception(UnexpectedPacket(
                "%s reply carries transaction %d, request was in %d" % (
                    op_name(sent_op), packet.tx_id, tx_id)))
        else:
            rvar.set(packet)

    def _pop_quirk(self, op: int) -> Any:
        # Linux xenbus before 5.x answers WATCH/UNWATCH with rq_id 0: the
        # reply belongs to the oldest such request still waiting.
        for rq_id, entry in self._pending.items():
            if entry is not _ABANDONED and entry[1] in _QUIRK_OPS and \
                    (op == Op.ERROR or entry[1] == op):
                del self._pending[rq_id]
                return entry
        return False

    def _deliver_event(self, packet: Packet) -> None:
        parts = packet.payload.split(NUL)
        if len(parts) < 2:
            log.warning("dropped a malformed watch event %r", packet)
            return
        event = Event(parts[0], parts[1])
        monitors = self._subscribers.get(event.token)
        if not monitors:
            log.debug("dropped an event for unknown token %r", event.token)
            return
        for monitor in tuple(monitors):
            monitor.deliver(event)

    def __repr__(self) -> str:
        return "Router(%r)" % (self.connection,)


def _abandoned(op: int, tx_id: int) -> Any:
    """The pending-table slot of a request nobody waits for any more.

    A WATCH/UNWATCH keeps its op: an rq_id-0 reply (old xenbus) must still
    consume this slot, not go to a later request's caller.
    """
    return (None, op, tx_id) if op in _QUIRK_OPS else _ABANDONED


def _copy(error: PyXSError) -> PyXSError:
    """A fresh exception per caller, so tracebacks do not pile up."""
    copy = type(error)(*error.args)
    copy.op, copy.path = error.op, error.path
    return copy


