"""How requests are written and replies read: the router's driver.

:class:`Driver` is the half of :class:`~pyxs.router.Router` that moves
bytes. A writer sends its requests and those queued behind it
(:mod:`pyxs._outbox`); a caller holding the reading role (a leader, or a
follower promoted to ``READER``) reads the connection and dispatches what
arrives, completing other callers' RVars through the
:class:`~pyxs._pending.PendingTable` and queueing watch events for the
monitors of the :class:`~pyxs._fanout.WatchFanout`; a follower waits on
its RVar until its reply is in or it is handed the role. The rules are in
the core modules; this one performs them with the router's lock, poller and
wake-ups, and records how the connection ended (``Driver._fail``).
"""

import logging
import threading
import time
from typing import Any, Deque, List, Optional, Sequence, Tuple

from ._fanout import Subscriber, WatchFanout
from ._internal import NUL, Event, Op, Packet, new_event, op_name
from ._outbox import Outbox, stream_intact
from ._pending import PendingTable
from ._role import LEAD, ReadingRole
from ._rvar import DONE, READER, RVar
from ._wakeup import Wakeup
from .connection import FileDescriptorConnection
from .exceptions import (
    ConnectionError,
    InvalidPayload,
    PyXSError,
    TimeoutError,
)
from .exceptions import copy_error as _copy

__all__ = ["Driver"]

log = logging.getLogger("pyxs.router")

_WATCH_EVENT = int(Op.WATCH_EVENT)
_INTERRUPTED = "interrupted while handling replies; the connection is closed"


class Driver:
    """The I/O half of a router (a base class of
    :class:`~pyxs.router.Router`, which sets up these attributes)."""

    connection: FileDescriptorConnection
    _lock: threading.Lock
    _pending: PendingTable[RVar]
    _role: ReadingRole[RVar]
    _fanout: WatchFanout
    _closed: bool
    _closing: Optional[Wakeup]
    _poller: Any
    _unsent_events: Deque[Tuple[Subscriber, Event]]

    _outbox: Outbox
    _payload_max: int

    _started: bool
    _failure: Optional[PyXSError]
    _wakeup: Optional[Wakeup]

    # -- the state of the connection ------------------------------------------

    def _reason(self) -> str:
        return ": %s" % self._failure if self._failure is not None else ""

    def _fail(self, failure: PyXSError) -> None:
        """Marks the connection dead; the router thread then shuts down."""
        with self._lock:
            first = self._mark_failed(failure)
        if first:
            self._signal_end()

    def _mark_failed(self, failure: PyXSError) -> bool:
        """_fail()'s bookkeeping, under the lock; True the first time."""
        first = not self._closed
        self._closed = self._role.closed = self._outbox.closed = True
        if self._failure is None:
            self._failure = failure
        return first

    def _signal_end(self) -> None:
        """Wakes every reader and the thread: the connection is ending."""
        if self._closing is not None:
            self._closing.wake()
            self.connection.wake_reader()

    def _not_usable(self) -> ConnectionError:
        if not self._started and self._failure is None:
            return ConnectionError("the client is not connected; use "
                                   "'with Client() as c:' or call connect()")
        if isinstance(self._failure, ConnectionError):
            return ConnectionError(*self._failure.args)
        return ConnectionError("the connection is closed%s" % self._reason())

    def _failed(self) -> PyXSError:
        """What a waiter raises once the connection has ended: a copy of
        the failure that ended it, as every other waiter gets."""
        failure = self._failure
        return _copy(failure) if failure is not None else \
            ConnectionError("the connection is closed")

    def abandon(self, rvar: RVar) -> None:
        """Drops the reply of a request whose caller stopped waiting.

        Past the pending table's limit of abandoned requests the daemon is
        considered broken and the connection is closed.
        """
        if rvar.rq_id is None:
            return
        with self._lock:
            too_many = self._pending.abandon(rvar.rq_id, rvar)
        if too_many:
            self._fail(ConnectionError(
                "more than %d requests got no reply; the connection is "
                "closed" % self._pending.abandoned_limit))

    def _wake(self) -> None:
        """Makes the router thread look at its state again."""
        if self._wakeup is not None:
            self._wakeup.wake()


    def _too_long(self, op: int, payload: bytes) -> InvalidPayload:
        return InvalidPayload(payload, "exceeds the %d-byte limit of %s" % (
            self._payload_max, type(self.connection).__name__), op=op)

    def _write(self, own: Sequence[RVar], op: int, data: Optional[bytes],
               deadline: Optional[float], timeout: Optional[float]) -> None:
        """Writes ``data``, then the requests queued meanwhile by others,
        until none is left (see :mod:`pyxs._outbox`).

        ``own`` are the caller's RVars, ``op`` the first one's. A write
        that times out before any byte went out, with nobody else's request
        in it, fails only this call; one that leaves a request half
        written, or others' requests unwritten, closes the connection.
        """
        connection = self.connection
        first = data
        try:
            while data is not None:
                if deadline is None:  # connections of pyxs 0.4's shape
                    connection.send_bytes(data)
                else:
                    connection.send_bytes(data, deadline)
                with self._lock:
                    data = self._outbox.next_batch()
        except BaseException as exc:
            unsent = connection.unsent
            with self._lock:
                stranded = self._outbox.abort()
            timed_out = isinstance(exc, TimeoutError)
            if stream_intact(stranded, unsent,
                             len(data) if data is first and data else -1,
                             timed_out, isinstance(exc, PyXSError)):
                for rvar in own:
                    self.abandon(rvar)
                if timed_out:
                    raise TimeoutError("%s: the daemon took no request "
                                       "within %g s" % (op_name(op),
                                                        timeout or 0)) \
                        from None
                raise
            if isinstance(exc, PyXSError) and not timed_out:
                self._fail(exc)  # the write itself failed
                raise
            self._fail(ConnectionError(
                "sending %s %s, leaving requests unwritten or partly "
                "written; the connection is closed" % (
                    op_name(op), "timed out after %g s" % (timeout or 0)
                    if timed_out else "was interrupted")))
            if timed_out:
                raise self._failed() from None
            raise

    def _await(self, rvar: RVar, role: str, deadline: Optional[float],
               timeout: Optional[float]) -> None:
        """Waits as ``role`` (LEAD, or a follower) until ``rvar`` is done."""
        try:
            if role is not LEAD and not self._follow(rvar, deadline,
                                                     timeout):
                return  # the reply is in
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

    def _follow(self, rvar: RVar, deadline: Optional[float],
                timeout: Optional[float]) -> bool:
        """Waits on ``rvar``'s slot: False once its reply is in, True when
        it was made the holder of the role (READER)."""
        got = False
        try:
            got = rvar._ready.acquire(True, -1 if deadline is None else
                                      max(deadline - time.monotonic(), 0))
        finally:
            if not got:  # timed out, or interrupted
                self._stop_waiting(rvar, "follow")
        if not got:
            if rvar.state == DONE:
                return False
            raise TimeoutError("no reply within %g s" % (timeout or 0))
        if rvar.state == DONE:
            rvar._ready.release()  # let any other waiter through
            return False
        return True

    def _stop_waiting(self, rvar: RVar, role: str) -> None:
        """A caller leaves early: gives up its place, or the role."""
        if role is LEAD:
            self._leave()
            return
        with self._lock:
            promoted = self._role.give_up(rvar)
        if promoted:
            rvar._ready.acquire(False)  # the promotion's wake-up
            self._leave()

    def _leave(self) -> None:
        """The holder gives the role up (see ReadingRole.release)."""
        if self._unsent_events:
            self._hand_out_events()
        with self._lock:
            successor, wake_thread = self._role.release()
            if successor is not None:
                successor.state = READER
        if successor is not None:
            successor._ready.release()
        elif wake_thread:
            self._wake()

    def _read_once(self, deadline: Optional[float],
                   timeout: Optional[float]) -> None:
        """Waits for bytes (or the end), reads them and dispatches what
        they complete. Only the holder of the role calls this."""
        if self._closed:
            raise self._failed()
        connection = self.connection
        if self._unsent_events:
            self._hand_out_events()
        if deadline is None and connection.read_wakes_on_close:
            self._receive()  # block in the read itself: one call fewer
            return
        if not connection.has_unparsed:
            if deadline is None:
                ready = self._poller.poll()
            else:
                left = deadline - time.monotonic()
                ready = self._poller.poll(max(0, int(left * 1000 + 0.999)))
                if not ready:
                    raise TimeoutError("no reply within %g s" % (timeout or 0))
            closing = self._closing
            if closing is None or \
                    any(fd == closing.fileno() for fd, _ in ready):
                raise self._failed()
        self._receive()

    def _receive(self) -> None:
        """Reads once and dispatches; the holder's only way to read.

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

    def _dispatch(self, packets: List[Packet]) -> None:
        """Completes the slots of the replies and queues the events read.
        The hot loop of every reader, hence the local names."""
        match = self._pending.match
        role = self._role
        for packet in packets:
            if packet[0] == _WATCH_EVENT:
                self._queue_event(packet)
                continue
            rvar, refusal = match(packet)
            if rvar is None:
                if refusal is not None:  # abandoned ones are dropped quietly
                    log.warning("dropped a %s", refusal)
                continue
            if role.followers:  # it need not wait for the role any more
                role.completed(rvar)
            if refusal is None:
                rvar._value = packet
            else:
                rvar._error = refusal
            if rvar.state != DONE:
                rvar.state = DONE
                rvar._ready.release()

    def _queue_event(self, packet: Packet) -> None:
        parts = packet.payload.split(NUL)
        if len(parts) < 2:
            log.warning("dropped a malformed watch event %r", packet)
            return
        event = new_event((parts[0], parts[1]))  # one C call
        for monitor in self._fanout.route(event):
            self._unsent_events.append((monitor, event))

    def _hand_out_events(self) -> None:
        """Gives monitors the events read so far. Readers call this just
        before they block or give up the role, not per event: the woken
        monitor thread then finds the GIL free."""
        events = self._unsent_events
        while events:
            monitor, event = events.popleft()
            monitor.deliver(event)
