"""The two races of issue 13, each forced into its bad interleaving through
public surfaces, deterministically; both tests failed on the code before
the sans-I/O core (commit 223f729).

a. The router terminated between queueing a request and writing it: the
   write meets a closed connection and must raise pyxs's ConnectionError,
   never an AttributeError from a ``None`` socket.
b. ``Monitor.fileno()`` creating its descriptor while ``deliver()`` runs:
   the event delivered meanwhile must leave the descriptor readable.

Every wait is bounded: a regression fails, it does not hang.
"""

import os
import queue
import select
import socket
import threading
from typing import Any, List

import pytest
from fakedaemon import FakeDaemon, honest
from xsassert import BOUND

from pyxs import Client
from pyxs._internal import Event, Op, Packet
from pyxs.connection import UnixSocketConnection, XenBusConnection
from pyxs.exceptions import ConnectionError

REQUEST = bytes(Packet(Op.READ, b"/a\0", rq_id=1, tx_id=0))


# -- a. writing on a connection closed meanwhile ------------------------------

def closed_socket_connection() -> UnixSocketConnection:
    ours, theirs = socket.socketpair()
    connection = UnixSocketConnection.from_socket(ours, "<pair>")
    connection.close()  # as Router.terminate does, from another thread
    theirs.close()
    return connection


def test_write_on_a_closed_unix_socket_is_a_connection_error():
    connection = closed_socket_connection()
    with pytest.raises(ConnectionError, match="not connected to <pair>"):
        connection.send_bytes(REQUEST)


def test_write_with_a_deadline_on_a_closed_unix_socket():
    connection = closed_socket_connection()
    with pytest.raises(ConnectionError, match="not connected"):
        connection.send_bytes(REQUEST, 0.0)


def test_read_and_fileno_on_a_closed_unix_socket():
    connection = closed_socket_connection()
    with pytest.raises(ConnectionError):
        connection.fill()
    with pytest.raises(ConnectionError):
        connection.fileno()
    connection.wake_reader()  # a no-op, not an error
    assert not connection.is_connected


def test_write_on_a_closed_xenbus_device_is_a_connection_error():
    leader, follower = os.openpty()  # relays like a xenbus device
    try:
        connection = XenBusConnection(os.ttyname(follower))
        connection.connect()
        connection.close()
        with pytest.raises(ConnectionError, match="not connected"):
            connection.send_bytes(REQUEST)
    finally:
        os.close(leader)
        os.close(follower)


def test_request_whose_connection_is_terminated_before_its_write():
    """Another thread terminates the router after this caller queued its
    request and before its bytes go out.

    The connection's ``send_bytes`` (the I/O boundary) is wrapped: before
    the first write, it terminates the router from a second thread and
    waits, bounded, until the router has closed the connection (a wrapped
    ``close``). The write then meets the closed connection, as it does
    when the terminating thread wins the race.
    """
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        router = c.router
        connection = router.connection
        closed = threading.Event()
        real_close, real_send = connection.close, connection.send_bytes
        terminators: List[threading.Thread] = []

        def close() -> None:
            real_close()
            closed.set()

        def send_bytes(data: bytes, *deadline: Any) -> None:
            if not terminators:
                terminator = threading.Thread(target=router.terminate)
                terminators.append(terminator)
                terminator.start()
                assert closed.wait(BOUND), "the router did not close"
            real_send(data, *deadline)

        connection.close = close
        connection.send_bytes = send_bytes
        with pytest.raises(ConnectionError):
            router.submit(Op.READ, 0, b"/a\0").get(BOUND)
        terminators[0].join(BOUND)
        assert not terminators[0].is_alive()
        assert not router.is_connected
        # Later calls fail the same way, at once.
        with pytest.raises(ConnectionError):
            c.read(b"/a")


# -- b. Monitor.fileno() racing deliver() -------------------------------------

#: How long the count in fileno() holds the door open for the delivery.
#: A correct Monitor makes the delivery wait for fileno() to finish, so
#: this passes in full; the racy one let it through in microseconds.
WINDOW = 0.5


class DeliveryInsideQsize(queue.Queue):  # type: ignore[type-arg]
    """An events queue whose qsize() lets a delivery run at that point.

    ``Monitor.fileno()`` counts the queued events with ``qsize()`` to put
    one byte per event into the descriptor it creates, then publishes the
    descriptor for ``deliver()`` to write to. The racy interleaving is a
    delivery between the two: its event is not counted, and it finds no
    descriptor to write to. This queue forces exactly that: its first
    ``qsize()`` takes the count, then releases a thread that is waiting to
    call ``deliver()`` and waits (at most ``WINDOW``) for that call to
    return, and only then returns the count taken before.
    """

    def __init__(self, monitor: Any, event: Event) -> None:
        super().__init__()
        self.armed = False
        self.go = threading.Event()
        self.delivered = threading.Event()
        self.counted = threading.Event()

        def deliver() -> None:
            if self.go.wait(BOUND):
                monitor.deliver(event)
                self.delivered.set()

        self.deliverer = threading.Thread(target=deliver)
        self.deliverer.start()

    def qsize(self) -> int:
        count = super().qsize()
        if self.armed:
            self.armed = False
            self.go.set()
            self.delivered.wait(WINDOW)
            self.counted.set()
        return count


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


@pytest.mark.parametrize("queued_before", [0, 2])
def test_event_delivered_while_fileno_creates_its_descriptor(queued_before):
    event = Event(b"/raced", b"t")
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c, \
            c.monitor() as m:
        events = DeliveryInsideQsize(m, event)
        try:
            m.events = events
            for i in range(queued_before):
                m.deliver(Event(b"/before/%d" % i, b"t"))
            events.armed = True
            fd = m.fileno()
            assert events.counted.is_set()  # the interleaving was forced
            events.deliverer.join(BOUND)
            assert not events.deliverer.is_alive()
            assert events.delivered.is_set()
            # One byte per queued event: readable for each, then not.
            for i in range(queued_before):
                assert readable(fd)
                assert m.get(0, unwatched=True) == (b"/before/%d" % i, b"t")
            assert readable(fd), "an event is queued, the descriptor is mute"
            assert m.get(0, unwatched=True) == event
            assert not readable(fd)
        finally:
            events.go.set()  # never leave the deliverer waiting
            events.deliverer.join(BOUND)
