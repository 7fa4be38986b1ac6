"""The router: one connection shared by many callers and monitors.

The rules live in pure modules; this one owns the thread, the socket, the
lock and the wake-ups, and drives them::

    caller threads                         router thread (pyxs-router)
    --------------                         ---------------------------
    call()/submit() -- lock --> PendingTable (ids, slots, reply check)
                                Outbox       (who writes, what rides along)
                                ReadingRole  (who reads, who is next)
                                WatchFanout  (which monitor gets an event)
    the writer ----------------> connection.send_bytes()
    the holder of the role ----> connection.fill() -> _dispatch()
                                                     <- holds the role while
                                                        watches exist and
                                                        callers are quiet

One lock (``Router._lock``) guards every core object; it is never held
while blocking on I/O. Two :class:`~pyxs._wakeup.Wakeup` pairs exist per
connection: ``_wakeup`` makes the thread look at the state again (drained
by the thread); ``_closing`` is written once when the connection ends and
never drained, so every reader polls it and leaves. This module has the
public API, the life cycle and the thread; :mod:`pyxs._driver` moves the
bytes (writing, reading, waiting, dispatching). docs/architecture.rst has
the whole map.
"""

import logging
import os
import select
import threading
import time
import weakref
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, cast

from ._driver import Driver
from ._fanout import Subscriber, WatchFanout
from ._internal import (
    HEADER,
    PAYLOAD_MAX,
    Event,
    Op,
    Packet,
    encode,
)
from ._outbox import Outbox
from ._pending import PendingTable
from ._role import LEAD, SERVE, SLEEP, THREAD, WAKE_THREAD, ReadingRole
from ._rvar import DONE, RVar
from ._wakeup import Wakeup
from .connection import FileDescriptorConnection
from .exceptions import (
    ConnectionError,
    PyXSError,
)
from .exceptions import copy_error as _copy

__all__ = ["Router", "RVar"]

log = logging.getLogger("pyxs.router")

_pack_header = HEADER.pack
_WATCH_EVENT = int(Op.WATCH_EVENT)
# With watches, the thread reads for monitors once callers have not read
# for this long (milliseconds): a burst of calls is not handed over to it.
_QUIET_MS = 2
Request = Tuple[int, int, bytes]

_routers: "weakref.WeakSet[Router]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for router in list(_routers):
        router._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Router(Driver):
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
        self._lock = threading.Lock()
        self._pending: PendingTable[RVar] = PendingTable()
        self._role: ReadingRole[RVar] = ReadingRole()
        self._outbox = Outbox()
        self._fanout = WatchFanout()
        self._started = False
        self._closed = False
        self._shut_down = False
        self._users = 0
        self._failure: Optional[PyXSError] = None
        self._wakeup: Optional[Wakeup] = None
        self._closing: Optional[Wakeup] = None
        self._poller: Any = None  # the role holder's, one at a time
        # Events read but not yet handed to monitors (see _hand_out_events).
        self._unsent_events: Deque[Tuple[Subscriber, Event]] = deque()

    # -- life cycle ---------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while the router serves the connection."""
        return self._started and not self._closed

    def start(self, timeout: Optional[float] = None) -> None:
        """Opens the connection and starts the thread; idempotent.

        :param timeout: seconds to wait for the daemon to accept.
        """
        with self._lock:
            if self._closed:
                raise ConnectionError("this router was terminated%s; create "
                                      "a new one" % self._reason())
            if self._started:
                return
            if timeout is None:  # connections written for pyxs 0.4
                self.connection.connect()
            else:
                self.connection.connect(timeout)
            self._wakeup, self._closing = Wakeup(), Wakeup()
            self._poller = select.poll()
            self._poller.register(self.connection.fileno(), select.POLLIN)
            self._poller.register(self._closing.fileno(), select.POLLIN)
            self._started = True
            _routers.add(self)
            self.thread.start()

    def terminate(self) -> None:
        """Stops the thread and closes the connection; idempotent.

        Requests still waiting for a reply fail with ConnectionError.
        """
        self._fail(ConnectionError("the router was terminated"))
        if not self._started:
            self._shutdown()
        elif self.thread is not threading.current_thread():
            self.thread.join()

    def acquire(self, timeout: Optional[float] = None) -> None:
        """Registers one more user (a connected client); starts if needed."""
        self.start(timeout)
        with self._lock:
            self._users += 1

    def release(self, blocking: bool = True) -> None:
        """Unregisters a user; the last one out terminates the router.

        ``blocking=False`` (a garbage-collected client) neither waits for
        the lock nor joins the thread, which shuts down by itself.
        """
        if not self._lock.acquire(blocking):
            return  # busy: the router stays until its other users go
        try:
            self._users -= 1
            last = self._users <= 0
            ending = last and not blocking and self._mark_failed(
                ConnectionError("the client was garbage-collected without "
                                "close()"))
        finally:
            self._lock.release()
        if last and blocking:
            self.terminate()
        elif ending:
            self._signal_end()  # the thread closes everything by itself

    def stats(self) -> Dict[str, Any]:
        """A snapshot of the router's state, for diagnostics and tests:
        ``in_flight`` (requests sent and not answered, ``abandoned``
        included), ``abandoned`` (their callers stopped waiting),
        ``followers`` (callers waiting for the reading role), ``reader``
        (``"caller"``, ``"thread"`` or None) and ``watch_tokens``."""
        with self._lock:
            holder = self._role.holder
            return {
                "in_flight": len(self._pending),
                "abandoned": self._pending.abandoned,
                "followers": len(self._role.followers),
                "reader": None if holder is None else
                "thread" if holder is THREAD else "caller",
                "watch_tokens": self._fanout.tokens(),
            }

    def _forked(self) -> None:
        # In a child process the socket is shared with the parent: never
        # touch it, but make calls and monitors fail with a clear message.
        failure = ConnectionError(
            "this XenStore connection belongs to the parent process; "
            "create a new Client after fork()")
        self._closed = self._shut_down = True
        self._failure = failure
        self._lock = threading.Lock()
        self._pending = PendingTable()
        self._role = ReadingRole()
        self._outbox = Outbox()
        self._unsent_events.clear()
        subscribers, self._fanout = self._fanout.everyone(), WatchFanout()
        for subscriber in subscribers:
            subscriber.connection_lost(_copy(failure))

    # -- requests -----------------------------------------------------------

    def send(self, packet: Packet) -> RVar:
        """Sends a packet; returns the RVar that receives its reply.

        The router assigns the request id, so clients sharing a router never
        collide; the reply is a :class:`~pyxs._internal.Packet`.
        """
        return self.submit(packet.op, packet.tx_id, packet.payload)

    def submit(self, op: int, tx_id: int, payload: bytes) -> RVar:
        """Sends a request built from its parts; returns its RVar."""
        return self.submit_many(((op, tx_id, payload),))[0]

    def submit_many(self, requests: Sequence[Request]) -> List[RVar]:
        """Sends several ``(op, tx_id, payload)`` requests in one write.

        Returns their RVars, in order. Nothing is sent if one is too long.
        """
        limit = self._payload_max
        for op, _, payload in requests:
            if len(payload) > limit:
                raise self._too_long(op, payload)
        if not requests:
            return []
        rvars = [RVar(self) for _ in requests]
        chunks: List[bytes] = []
        append = chunks.append
        pack = _pack_header
        with self._lock:
            if self._closed or not self._started:
                raise self._not_usable()
            add = self._pending.add
            for rvar, (op, tx_id, payload) in zip(rvars, requests):
                rvar.rq_id = rq_id = add(rvar, op, tx_id)
                append(pack(op, rq_id, tx_id, len(payload)))
                append(payload)
            data = self._outbox.claim(b"".join(chunks))
        if data is not None:
            self._write(rvars, requests[0][0], data, None, None)
        return rvars

    def call(self, op: int, tx_id: int, payload: bytes,
             timeout: Optional[float] = None) -> Packet:
        """Sends one request and waits for its reply: the path every Client
        call takes. The whole call, writing included, takes at most
        ``timeout`` seconds.

        In the same locked step that registers the request, the caller
        takes the reading role or queues as a follower, so a lone request
        costs two acquisitions of the lock and no thread hand-off.
        """
        if len(payload) > self._payload_max:
            raise self._too_long(op, payload)
        deadline = None if timeout is None else time.monotonic() + timeout
        rvar = RVar(self)
        with self._lock:
            if self._closed or not self._started:
                raise self._not_usable()
            rvar.rq_id = rq_id = self._pending.add(rvar, op, tx_id)
            data = self._outbox.claim(encode(op, rq_id, tx_id, payload))
            role = self._role.arrive(rvar)
        if role is WAKE_THREAD:
            self._wake()
        if data is not None:
            try:
                self._write((rvar,), op, data, deadline, timeout)
            except BaseException:
                self._stop_waiting(rvar, role)
                raise
        if role is LEAD:  # _await()'s common case, inlined
            try:
                try:
                    read_once = self._read_once
                    while rvar.state != DONE:
                        read_once(deadline, timeout)
                finally:
                    self._leave()
            except BaseException:
                if rvar.state != DONE:
                    self.abandon(rvar)
                raise
        else:
            self._await(rvar, role, deadline, timeout)
        if rvar._error is not None:
            raise rvar._error
        reply: Packet = rvar._value  # Any: no cast() call on this path
        return reply

    def wait(self, rvar: RVar, timeout: Optional[float] = None) -> None:
        """Blocks until ``rvar`` (sent through this router) is done,
        reading the connection whenever nobody else does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if rvar.state == DONE:
                return
            role = self._role.arrive(rvar)
        if role is WAKE_THREAD:
            self._wake()
        self._await(rvar, role, deadline, timeout)

    # -- watches ------------------------------------------------------------

    def attach(self, monitor: Subscriber) -> None:
        """Registers a monitor to be told (``connection_lost``) when the
        connection ends, whether or not it watches anything."""
        with self._lock:
            if not self._shut_down:
                self._fanout.attach(monitor)
                return
        monitor.connection_lost(self._failed())

    def subscribe(self, token: bytes, monitor: Subscriber) -> None:
        """Delivers events carrying ``token`` to ``monitor.deliver``."""
        with self._lock:
            first = self._fanout.subscribe(token, monitor)
        if first:  # the thread starts reading, for events
            self._wake()

    def unsubscribe(self, token: bytes, monitor: Subscriber) -> None:
        """Stops delivering events carrying ``token`` to ``monitor``."""
        with self._lock:
            last = self._fanout.unsubscribe(token, monitor)
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
        """The thread's loop: sleep while callers read for themselves; read
        for the monitors once callers have been quiet for a moment.

        The connection is polled for no event here, so replies do not wake
        the thread; only a hang-up does.
        """
        wakeup, closing = cast(Wakeup, self._wakeup), cast(Wakeup,
                                                           self._closing)
        waiter = select.poll()
        waiter.register(wakeup.fileno(), select.POLLIN)
        waiter.register(closing.fileno(), select.POLLIN)
        conn_fd = self.connection.fileno()
        waiter.register(conn_fd, 0)
        seen: Optional[int] = None
        while not self._closed:
            timeout = -1
            if self._fanout:
                with self._lock:
                    decision, seen = self._role.thread_look(seen)
                if decision is SERVE:
                    self._serve_events()
                    seen = None  # callers took over: give them a while
                    continue
                timeout = -1 if decision is SLEEP else _QUIET_MS
            ready = waiter.poll(timeout)
            wakeup.clear()
            if any(fd == conn_fd for fd, _ in ready):
                # Hung up: read what is left, up to the end of the stream.
                self._take_role()
                try:
                    while not self._closed:
                        self._receive()
                finally:
                    self._leave()

    def _serve_events(self) -> None:
        """Reads for the monitors (the thread holds the role) until a caller
        waits for the role, the last watch goes, or the end."""
        wakeup, closing = cast(Wakeup, self._wakeup), cast(Wakeup,
                                                           self._closing)
        poller = select.poll()
        for fd in (self.connection.fileno(), wakeup.fileno(),
                   closing.fileno()):
            poller.register(fd, select.POLLIN)
        role = self._role
        try:
            while not self._closed and self._fanout:
                if self._unsent_events:
                    self._hand_out_events()
                if not self.connection.has_unparsed:
                    ready = [fd for fd, _ in poller.poll()]
                    if closing.fileno() in ready:
                        break
                    if wakeup.fileno() in ready:
                        wakeup.clear()
                        if role.followers:
                            break  # a caller waits: it reads for itself
                        continue  # look at the state again
                self._receive()
        finally:
            self._leave()

    def _take_role(self) -> None:
        """Blocks the router thread until it holds the reading role."""
        with self._lock:
            if self._role.thread_take():
                return
        wakeup = cast(Wakeup, self._wakeup)
        waiter = select.poll()
        waiter.register(wakeup.fileno(), select.POLLIN)
        while True:
            waiter.poll()
            wakeup.clear()
            with self._lock:
                if self._role.thread_take():
                    return

    def _shutdown(self) -> None:
        if self._started and self.thread is threading.current_thread():
            self._take_role()  # readers see the closing signal and leave
        with self._lock:
            waiting = self._pending.fail_all()
            subscribers = self._fanout.everyone()
            failure = self._failed()
            self._shut_down = True
        for rvar in waiting:
            rvar.set_exception(_copy(failure))
        self._hand_out_events()
        for monitor in subscribers:
            monitor.connection_lost(_copy(failure))
        self.connection.close()
        for pair in (self._wakeup, self._closing):
            if pair is not None:
                pair.close()

    def __repr__(self) -> str:
        return "Router(%r)" % (self.connection,)
