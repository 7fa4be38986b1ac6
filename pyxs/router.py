"""The router: one connection shared by many callers and monitors.

Callers write their own requests under a lock. Replies are read by whoever
holds the *reading role*: a caller waiting for a reply takes it when it is
free and reads until its own reply arrives, completing the RVars of other
callers on the way (leader/follower), then hands the role to a caller still
waiting. No thread hand-off sits between a reply and its caller unless
another caller is already reading. While watches exist, the background
router thread holds the role, so events reach monitors whether or not
anybody calls. A pipe wakes the thread, and a second one, written once
when the connection ends, wakes every reader.
"""

import logging
import os
import select
import socket
import threading
import time
import weakref
from collections import deque
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ._internal import (
    HEADER,
    NUL,
    PAYLOAD_MAX,
    Event,
    Op,
    Packet,
    _new_event,
    encode,
    op_name,
)
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
_pack_header = HEADER.pack
_new_lock = threading.Lock
_QUIRK_OPS = (Op.WATCH, Op.UNWATCH)  # old xenbus answers these with rq_id 0
_RQ_ID_0_OPS = frozenset(_QUIRK_OPS + (Op.ERROR,))
_WATCH_EVENT = int(Op.WATCH_EVENT)
_ROUTER = "router-thread"  # the reading role's holder when it is the thread
_INTERRUPTED = "interrupted while handling replies; the connection is closed"
# With watches, the thread reads for monitors once callers have not read
# for this long (milliseconds): a burst of calls is not handed over to it.
_QUIET_MS = 2

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

    def __init__(self, router: "Optional[Router]" = None) -> None:
        self._ready = ready = _new_lock()
        ready.acquire()
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self.rq_id: Optional[int] = None
        #: Set by the router that sent the request: get() then reads the
        #: connection itself when nobody else does.
        self.router = router

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
            if self.router is not None:
                # The caller may read the connection itself (leader).
                self.router._await(self, timeout)
            else:
                if not self._ready.acquire(True, -1 if timeout is None
                                           else max(timeout, 0)):
                    raise TimeoutError("no reply within %g s" % timeout)
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
        self._payload_max: int = getattr(connection, "payload_max",
                                         PAYLOAD_MAX)
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
        # Written once when the connection ends and never drained: every
        # reader polls it.
        self._closing_r: Optional[socket.socket] = None
        self._closing_w: Optional[socket.socket] = None
        # The reading role: None (free), a leading RVar, or _ROUTER.
        self._reader: Any = None
        # Callers waiting for a reply while another reads: an ordered set.
        self._followers: Dict[RVar, None] = {}
        self._router_wants = False
        self._reads = 0  # times a caller took the reading role
        # The thread sleeps until the role is free (see _watch_over).
        self._router_wants_free = False
        self._unsent_events: "deque[Tuple[Any, Event]]" = deque()
        self._outbox: List[bytes] = []  # requests queued for writing
        self._sending = False  # a thread is writing the outbox
        self._poller: Any = None  # the role holder's, one at a time

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
            self._closing_r, self._closing_w = socket.socketpair()
            for end in (self._wakeup_r, self._wakeup_w, self._closing_r,
                        self._closing_w):
                end.setblocking(False)
            self._poller = select.poll()
            self._poller.register(self.connection.fileno(), select.POLLIN)
            self._poller.register(self._closing_r.fileno(), select.POLLIN)
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
            self._signal_closing()
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
        self._reader = None
        self._followers = {}
        self._outbox = []
        self._sending = False

    # -- requests -----------------------------------------------------------

    def send(self, packet: Packet) -> RVar:
        """Sends a packet; returns the RVar that receives its reply.

        The router assigns the request id, so clients sharing a router never
        collide; the reply is a :class:`~pyxs._internal.Packet`.
        """
        return self.submit(packet.op, packet.tx_id, packet.payload)

    def submit(self, op: int, tx_id: int, payload: bytes) -> RVar:
        """Sends a request built from its parts; the fast path of send()."""
        if len(payload) > self._payload_max:
            return self.submit_many(((op, tx_id, payload),))[0]  # refuses
        rvar = RVar(self)
        with self._lock:
            data = self._queue(rvar, op, tx_id, payload)
        if data is not None:
            self._write_outbox((rvar,), op, data)
        return rvar

    def _queue(self, rvar: RVar, op: int, tx_id: int,
               payload: bytes) -> Optional[bytes]:
        """Gives ``rvar`` a request id and a pending slot and encodes its
        request; the caller holds the lock. Returns the bytes the caller
        must write itself, or None when a write in progress takes them
        along (write combining)."""
        if self._closed or not self._started:
            raise self._not_usable()
        return self._claim_write(
            encode(op, self._slot(rvar, op, tx_id), tx_id, payload))

    def _slot(self, rvar: RVar, op: int, tx_id: int) -> int:
        """Gives ``rvar`` the next free request id and its pending slot;
        returns the id. The caller holds the lock."""
        pending = self._pending
        rq_id = self._next_rq_id
        while rq_id in pending:
            rq_id = rq_id + 1 if rq_id + 1 < _RQ_ID_LIMIT else 1
        rvar.rq_id = rq_id
        pending[rq_id] = [rvar, op, tx_id]
        self._next_rq_id = rq_id + 1 if rq_id + 1 < _RQ_ID_LIMIT else 1
        return rq_id

    def _claim_write(self, data: bytes) -> Optional[bytes]:
        """Returns ``data`` for the caller to write, or None when another
        thread is writing and takes it along. The caller holds the lock."""
        if self._sending:
            self._outbox.append(data)
            return None
        self._sending = True
        return data

    def call(self, op: int, tx_id: int, payload: bytes,
             timeout: Optional[float] = None) -> Packet:
        """Sends one request and waits for its reply: :meth:`submit` and
        :meth:`RVar.get` in one, the path every Client call takes.

        The caller takes the reading role in the same locked step that
        queues its request, when nobody holds it, so a lone request costs
        two acquisitions of the router's lock and no other hand-off.
        """
        if len(payload) > self._payload_max:
            return self.submit(op, tx_id, payload).get(timeout)  # refuses
        rvar = RVar(self)
        with self._lock:
            data = self._queue(rvar, op, tx_id, payload)
            reader = self._reader
            lead = reader is None
            if lead:
                self._reader = rvar
                self._reads += 1
            elif reader is not _ROUTER:  # queue up in the same step
                self._followers[rvar] = None
        if not lead:
            following = reader is not _ROUTER
            try:
                if data is not None:
                    self._write_outbox((rvar,), op, data)
                if following and timeout is None:
                    # _await()'s common case, inlined: wait for the reply
                    # or for the reading role.
                    rvar._ready.acquire()
                    if rvar._done:
                        rvar._ready.release()  # let other waiters through
                    following = False
            except BaseException:
                self._unfollow(rvar)  # passes the role on if handed it
                if not rvar._done:
                    self._abandon(rvar)
                raise
            if not rvar._done:  # handed the role, or waiting with a timeout
                self._await(rvar, timeout, following)
        else:
            try:
                if data is not None:
                    self._write_outbox((rvar,), op, data)
                if timeout is None:
                    while not rvar._done:
                        self._read_once(None, None)
                else:
                    deadline = time.monotonic() + max(timeout, 0)
                    while not rvar._done:
                        self._read_once(deadline, timeout)
            except BaseException:
                if not rvar._done:
                    self._abandon(rvar)
                raise
            finally:
                self._leave()
        if rvar._error is not None:
            raise rvar._error
        return rvar._value

    def submit_many(self, requests: Sequence[Tuple[int, int, bytes]]
                    ) -> List[RVar]:
        """Sends several ``(op, tx_id, payload)`` requests in one write.

        Returns their RVars, in order. Pipelining helpers such as walk()
        use it to save a system call per request.
        """
        limit = self._payload_max
        for op, _, payload in requests:
            if len(payload) > limit:
                raise InvalidPayload(payload, "exceeds the %d-byte limit of "
                                     "%s" % (limit,
                                             type(self.connection).__name__),
                                     op=op)
        if not requests:
            return []
        rvars = [RVar(self) for _ in requests]
        chunks: List[bytes] = []
        append = chunks.append
        pack = _pack_header
        with self._lock:
            if self._closed or not self._started:
                raise self._not_usable()
            slot = self._slot
            for rvar, (op, tx_id, payload) in zip(rvars, requests):
                append(pack(op, slot(rvar, op, tx_id), tx_id, len(payload)))
                append(payload)
            data = self._claim_write(b"".join(chunks))
        if data is not None:
            self._write_outbox(rvars, requests[0][0], data)
        return rvars

    def _write_outbox(self, own: Sequence[RVar], op: int,
                      data: Optional[bytes]) -> None:
        """Writes ``data``, then queued requests until none is left.

        One thread writes at a time (write combining): requests that other
        threads queue meanwhile go out with its next write, so under load
        many requests share one system call. ``own`` are the RVars of the
        caller's requests, ``op`` the first one's (for messages); they are
        abandoned if an interrupt (Ctrl-C) stops the caller after they went
        out whole.
        """
        connection = self.connection
        try:
            connection.unsent = -1  # only a finished write sets 0
            while True:
                connection.send_bytes(data)
                data = None
                with self._lock:
                    outbox = self._outbox
                    if not outbox or self._closed:
                        self._sending = False
                        return
                    connection.unsent = -1
                    data = outbox[0] if len(outbox) == 1 else \
                        b"".join(outbox)
                    outbox.clear()
        except BaseException as exc:
            with self._lock:
                self._sending = False
                whole = data is None or connection.unsent == 0
                if whole and not isinstance(exc, PyXSError):
                    # The stream is intact: drop the caller's late replies.
                    for rvar in own:
                        self._abandon(rvar)
                    if not self._outbox:
                        raise
            if isinstance(exc, PyXSError):
                self._fail(exc)
            else:
                # A half-written packet, or other callers' requests left
                # unwritten: the stream cannot be trusted any more.
                self._fail(ConnectionError(
                    "sending %s was interrupted; the connection is closed"
                    % op_name(op)))
            raise

    def _not_usable(self) -> ConnectionError:
        if not self._started and self._failure is None:
            return ConnectionError("the client is not connected; use "
                                   "'with Client() as c:' or call connect()")
        failure = self._failure
        if isinstance(failure, ConnectionError):
            return ConnectionError(*failure.args)
        return ConnectionError("the connection is closed%s" % self._reason())

    def _failed(self) -> PyXSError:
        """What a waiter raises once the connection has ended: a copy of
        the failure that ended it, as every other waiter gets."""
        failure = self._failure
        return _copy(failure) if failure is not None else \
            ConnectionError("the connection is closed")

    def _abandon(self, rvar: RVar) -> None:
        """Drops the reply of a request whose caller stopped waiting.

        The slot stays, so that the reply still finds it; a WATCH/UNWATCH
        slot must also take an rq_id-0 reply (old xenbus), not leave it to
        a later request's caller. Lock-free: one atomic item assignment on
        a list only the reader pops.
        """
        entry = self._pending.get(rvar.rq_id)
        if entry is not None and entry[0] is rvar:
            entry[0] = None

    def _wake(self) -> None:
        """Makes the router thread look at its state again."""
        if self._wakeup_w is not None:
            try:
                self._wakeup_w.send(b"x")
            except OSError:
                pass

    def _signal_closing(self) -> None:
        """Wakes the thread and every reader: the connection is ending."""
        if self._closing_w is not None:
            try:
                self._closing_w.send(b"x")
            except OSError:
                pass
            self.connection.wake_reader()

    def _fail(self, failure: PyXSError) -> None:
        """Marks the connection dead; the router thread then shuts down."""
        with self._lock:
            if not self._closed:
                self._closed = True
            if self._failure is None:
                self._failure = failure
        self._signal_closing()

    # -- the reading role ---------------------------------------------------

    def _await(self, rvar: RVar, timeout: Optional[float],
               following: bool = False) -> None:
        """Blocks until ``rvar`` is done, reading the connection whenever
        nobody else does. ``following``: ``rvar`` is among the followers
        already."""
        deadline = None if timeout is None else \
            time.monotonic() + max(timeout, 0)
        try:
            while not rvar._done:
                if following:
                    following = lead = False
                else:
                    with self._lock:
                        if rvar._done:
                            break
                        reader = self._reader
                        lead = reader is None or reader is rvar
                        if lead:
                            self._reader = rvar
                            self._reads += 1
                        else:
                            self._followers[rvar] = None
                    if reader is _ROUTER:
                        self._wake()  # the thread hands the role over
                if lead:
                    try:
                        while not rvar._done:
                            self._read_once(deadline, timeout)
                    finally:
                        self._leave()
                elif not self._follow(rvar, deadline):
                    raise TimeoutError("no reply within %g s" % timeout)
        except BaseException:
            if not rvar._done:
                self._abandon(rvar)
            raise

    def _follow(self, rvar: RVar, deadline: Optional[float]) -> bool:
        """Waits until ``rvar`` is done or this caller is handed the role;
        False on timeout."""
        got = False
        try:
            got = rvar._ready.acquire(
                True, -1 if deadline is None else
                max(deadline - time.monotonic(), 0))
        finally:
            if not got:  # timed out, or interrupted
                self._unfollow(rvar)
        if got and rvar._done:  # _dispatch() took it off the followers
            rvar._ready.release()  # let any other waiter through
        return got or rvar._done

    def _unfollow(self, rvar: RVar) -> None:
        """Takes a caller that stops waiting off the followers; passes the
        reading role on if it was handed the role meanwhile."""
        with self._lock:
            self._followers.pop(rvar, None)
            promoted = self._reader is rvar
        if promoted:
            rvar._ready.acquire(False)
            self._leave()

    def _leave(self) -> None:
        """Gives up the reading role: to a caller still waiting for its
        reply, else to the router thread if it wants it, else to nobody."""
        if self._unsent_events:
            self._hand_out_events()
        successor = None
        with self._lock:
            followers = self._followers
            if self._closed and self._router_wants:
                self._reader = _ROUTER
            else:
                while followers:
                    candidate = next(iter(followers))
                    del followers[candidate]
                    if not candidate._done:
                        successor = candidate
                        break
                if successor is not None:
                    self._reader = successor
                elif self._router_wants:
                    self._reader = _ROUTER
                else:
                    self._reader = None
            to_router = self._reader is _ROUTER or (
                self._reader is None and self._router_wants_free)
            if to_router:
                self._router_wants_free = False
        if successor is not None:
            successor._ready.release()
        elif to_router:
            self._wake()

    def _read_once(self, deadline: Optional[float],
                   timeout: Optional[float]) -> None:
        """Waits for bytes (or the end), reads them and dispatches what
        they complete. Only the role holder calls this."""
        if self._closed:
            raise self._failed()
        connection = self.connection
        if self._unsent_events:
            self._hand_out_events()
        if deadline is None and connection.read_wakes_on_close:
            # Block in the read itself: one system call fewer.
            self._receive()
            return
        if not connection.has_unparsed:
            if deadline is None:
                ready = self._poller.poll()
            else:
                left = deadline - time.monotonic()
                ready = self._poller.poll(max(0, int(left * 1000 + 0.999)))
                if not ready:
                    raise TimeoutError("no reply within %g s" % timeout)
            closing = self._closing_r
            if closing is None or \
                    any(fd == closing.fileno() for fd, _ in ready):
                raise self._failed()
        self._receive()

    def _receive(self) -> None:
        """Reads once and dispatches; the role holder's only way to read.

        Interrupted while blocked in the read, nothing is lost (see
        :meth:`~pyxs.connection.FileDescriptorConnection.fill`); interrupted
        while handling the bytes, the stream's state is unknown, so the
        connection is closed.
        """
        connection = self.connection
        if not connection.has_unparsed:
            connection.fill()
        try:
            self._dispatch(connection.parse())
        except PyXSError as exc:
            if self._closed:  # woken by the end: report its cause
                raise self._failed() from None
            self._fail(exc)
            raise
        except BaseException:
            self._fail(ConnectionError(_INTERRUPTED))
            raise

    def _take_role(self) -> None:
        """Blocks the router thread until it holds the reading role."""
        with self._lock:
            if self._reader is None:
                self._reader = _ROUTER
                return
            self._router_wants = True
        waiter = select.poll()
        waiter.register(self._wakeup_r.fileno(), select.POLLIN)
        while True:
            waiter.poll()
            self._drain_wakeups()
            with self._lock:
                if self._reader is _ROUTER:
                    self._router_wants = False
                    return

    def _drain_wakeups(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except OSError:  # drained (EAGAIN)
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
            first = not self._subscribers
            self._subscribers.setdefault(token, set()).add(monitor)
        if first:  # the thread starts reading, for events
            self._wake()

    def unsubscribe(self, token: bytes, monitor: Any) -> None:
        """Stops delivering events carrying ``token`` to ``monitor``."""
        last = False
        with self._lock:
            monitors = self._subscribers.get(token)
            if monitors is not None:
                monitors.discard(monitor)
                if not monitors:
                    del self._subscribers[token]
            last = not self._subscribers
        if last:  # no events to wait for: callers read for themselves
            self._wake()

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            self._watch_over()
        except PyXSError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave callers hanging
            log.exception("pyxs router thread failed")
            self._fail(ConnectionError("router failed: %r" % exc))
        self._fail(ConnectionError("the connection is closed"))
        self._shutdown()

    def _watch_over(self) -> None:
        """The thread's loop: sleep while callers read for themselves;
        read for the monitors once callers have been quiet for a moment.

        The connection is polled for no event here, so replies do not wake
        the thread; only a hang-up does. While watches exist the thread
        looks every _QUIET_MS at whether anybody read meanwhile; once
        nobody did, it takes the reading role so that events reach
        monitors with nobody calling. Without watches it sleeps until
        woken.
        """
        waiter = select.poll()
        waiter.register(self._wakeup_r.fileno(), select.POLLIN)
        waiter.register(self._closing_r.fileno(), select.POLLIN)
        conn_fd = self.connection.fileno()
        waiter.register(conn_fd, 0)
        seen = None
        while not self._closed:
            timeout = -1
            if self._subscribers:
                with self._lock:
                    reader = self._reader
                    quiet = reader is None and self._reads == seen
                    if quiet:
                        self._reader = _ROUTER
                    elif reader is not None and self._reads == seen:
                        # One caller has been reading (and delivering
                        # events) all along: sleep until it lets go.
                        self._router_wants_free = True
                        timeout = -1
                    else:
                        timeout = _QUIET_MS
                    seen = self._reads
                if quiet:
                    self._serve_events()
                    seen = None  # callers took over: give them a while
                    continue
            ready = waiter.poll(timeout)
            self._drain_wakeups()
            if any(fd == conn_fd for fd, _ in ready):
                # Hung up: read what is left, up to the end of the stream.
                self._take_role()
                try:
                    while not self._closed:
                        self._receive()
                finally:
                    self._leave()

    def _serve_events(self) -> None:
        """Reads for the monitors (the thread holds the reading role) until
        a caller asks for the role, the last watch goes, or the end."""
        wakeup = self._wakeup_r.fileno()
        closing = self._closing_r.fileno()
        poller = select.poll()
        for fd in (self.connection.fileno(), wakeup, closing):
            poller.register(fd, select.POLLIN)
        try:
            while not self._closed and self._subscribers:
                if self._unsent_events:
                    self._hand_out_events()
                if not self.connection.has_unparsed:
                    ready = [fd for fd, _ in poller.poll()]
                    if closing in ready:
                        break
                    if wakeup in ready:
                        self._drain_wakeups()
                        if self._followers:
                            break  # a caller waits: it reads for itself
                        continue  # look at the mode again
                self._receive()
        finally:
            self._leave()

    def _shutdown(self) -> None:
        if self._started and self.thread is threading.current_thread():
            self._take_role()  # readers see the closing signal and leave
        with self._lock:
            pending, self._pending = self._pending, {}
            monitors = set(self._monitors)
            monitors.update(m for ms in self._subscribers.values() for m in ms)
            failure = self._failure or ConnectionError("connection closed")
            self._shut_down = True
        for entry in pending.values():
            if entry[0] is not None:
                entry[0].set_exception(_copy(failure))
        self._hand_out_events()
        for monitor in monitors:
            monitor._connection_lost(_copy(failure))
        self.connection.close()
        for end in (self._wakeup_r, self._wakeup_w, self._closing_r,
                    self._closing_w):
            if end is not None:
                end.close()

    def _dispatch(self, packets: List[Packet]) -> None:
        """Completes the RVars of the replies and queues the events read.

        The hot loop of every reader, hence the local names.
        """
        pending = self._pending
        followers = self._followers
        for packet in packets:
            op, rq_id, tx_id, _, _ = packet
            if op == _WATCH_EVENT:
                self._deliver_event(packet)
                continue
            # Only the role holder removes entries, so one atomic pop
            # needs no lock; the rare rq_id-0 search does.
            entry = pending.pop(rq_id, None)
            if entry is None and rq_id == 0 and op in _RQ_ID_0_OPS:
                with self._lock:
                    entry = self._pop_quirk(op)
            if entry is None:
                log.warning("dropped a %s reply for unknown request id %d",
                            op_name(op), rq_id)
                continue
            rvar, sent_op, sent_tx = entry
            if rvar is None:
                continue  # its caller stopped waiting
            followers.pop(rvar, None)  # it need not wait for the role
            if op == sent_op and tx_id == sent_tx:
                rvar._value = packet  # rvar.set(packet), inlined
                if not rvar._done:
                    rvar._done = True
                    rvar._ready.release()
            else:
                self._settle(rvar, packet, sent_op, sent_tx)

    def _settle(self, rvar: RVar, packet: Packet, sent_op: int,
                sent_tx: int) -> None:
        """Completes ``rvar`` with a reply whose op or transaction differs
        from its request's: an error, a new transaction's id, or a bug."""
        op = packet.op
        if op != sent_op and op != Op.ERROR:
            rvar.set_exception(UnexpectedPacket(
                "%s request %d got a %s reply" % (
                    op_name(sent_op), packet.rq_id, op_name(op))))
        elif packet.tx_id != sent_tx and sent_op != Op.TRANSACTION_START \
                and packet.rq_id != 0:
            rvar.set_exception(UnexpectedPacket(
                "%s reply carries transaction %d, request was in %d" % (
                    op_name(sent_op), packet.tx_id, sent_tx)))
        else:
            rvar.set(packet)

    def _pop_quirk(self, op: int) -> Any:
        # Linux xenbus before 5.x answers WATCH/UNWATCH with rq_id 0: the
        # reply belongs to the oldest such request still waiting.
        for rq_id, entry in self._pending.items():
            if entry[1] in _QUIRK_OPS and \
                    (op == Op.ERROR or entry[1] == op):
                del self._pending[rq_id]
                return entry
        return None

    def _deliver_event(self, packet: Packet) -> None:
        parts = packet.payload.split(NUL)
        if len(parts) < 2:
            log.warning("dropped a malformed watch event %r", packet)
            return
        token = parts[1]
        event = _new_event((parts[0], token))
        monitors = self._subscribers.get(token)
        if not monitors:
            log.debug("dropped an event for unknown token %r", token)
            return
        for monitor in tuple(monitors):
            self._unsent_events.append((monitor, event))

    def _hand_out_events(self) -> None:
        """Gives monitors the events read so far.

        The reader calls this just before it blocks or gives up the role,
        not per event: the woken monitor thread then finds the GIL free
        instead of competing with the reader for it.
        """
        events = self._unsent_events
        while events:
            monitor, event = events.popleft()
            monitor.deliver(event)

    def __repr__(self) -> str:
        return "Router(%r)" % (self.connection,)


def _copy(error: PyXSError) -> PyXSError:
    """A fresh exception per caller, so tracebacks do not pile up."""
    copy = type(error)(*error.args)
    copy.op, copy.path = error.op, error.path
    return copy


