"""Hostile and broken replies: nothing hangs, nothing is misdelivered."""

import errno
import logging
import threading

import pytest
from fakedaemon import FakeConnection, FakeDaemon, honest

from pyxs import Client
from pyxs._internal import HEADER, NUL, Op, Packet
from pyxs.exceptions import ConnectionError, PyXSError, UnexpectedPacket

# Generous bound: a broken peer must make calls fail, never hang; the
# timeout only turns a hang into a test failure (TimeoutError is not
# what these tests expect).
BOUND = 10


def serve(handler):
    return FakeDaemon(handler)


def on_read(action):
    """A handler doing ``action`` for READ and answering the rest honestly."""
    def handler(conn: FakeConnection, request: Packet) -> None:
        if request.op == Op.READ:
            action(conn, request)
        else:
            honest(conn, request)
    return handler


def test_stray_reply_is_dropped_and_logged(caplog):
    def stray_then_real(conn, request):
        conn.reply(request, b"stray", rq_id=request.rq_id + 1000)
        conn.reply(request, b"real")

    with serve(on_read(stray_then_real)) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c, \
            caplog.at_level(logging.WARNING, logger="pyxs.router"):
        assert c.read(b"/a") == b"real"
        assert c.read(b"/b") == b"real"
    assert "unknown request id" in caplog.text


def test_reply_with_wrong_op_fails_only_that_call():
    with serve(on_read(lambda conn, rq: conn.reply(rq, b"OK\0",
                                                   op=Op.WRITE))) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        with pytest.raises(UnexpectedPacket, match="READ"):
            c.read(b"/a")
        c.write(b"/a", b"still usable")
        assert fake.connections[0].received[-1].op == Op.WRITE


def test_reply_with_wrong_tx_id_is_refused():
    with serve(on_read(lambda conn, rq: conn.reply(rq, b"x",
                                                   tx_id=42))) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        with pytest.raises(UnexpectedPacket, match="transaction 42"):
            c.read(b"/a")
        c.mkdir(b"/still/usable")


def oversize_header(conn, request):
    conn.send_raw(HEADER.pack(Op.READ, request.rq_id, 0, 5000))


def truncated_header(conn, request):
    conn.send_raw(HEADER.pack(Op.READ, request.rq_id, 0, 3)[:7])
    conn.close()


def truncated_payload(conn, request):
    conn.send_raw(HEADER.pack(Op.READ, request.rq_id, 0, 10) + b"abc")
    conn.close()


def garbage(conn, request):
    conn.send_raw(b"\xff" * 40)


def hang_up(conn, request):
    conn.close()


@pytest.mark.parametrize("action, expected, message", [
    (oversize_header, UnexpectedPacket, "5000 payload bytes"),
    (garbage, UnexpectedPacket, "payload bytes"),
    (truncated_header, ConnectionError, "middle of a packet"),
    (truncated_payload, ConnectionError, "middle of a packet"),
    (hang_up, ConnectionError, "closed the connection"),
])
def test_broken_stream_fails_every_waiter(action, expected, message):
    slow_arrived = threading.Event()

    def stall_others(conn, request):
        # /slow is never answered; /a triggers the fault.
        if request.payload.startswith(b"/slow"):
            slow_arrived.set()
            return
        action(conn, request)

    with serve(on_read(stall_others)) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        errors = []

        def slow_reader():
            try:
                c.read(b"/slow")
            except PyXSError as exc:
                errors.append(exc)

        other = threading.Thread(target=slow_reader)
        other.start()
        assert slow_arrived.wait(BOUND)
        with pytest.raises(expected, match=message):
            c.read(b"/a")
        other.join(BOUND)
        assert not other.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], expected)
        c.router.thread.join(BOUND)
        assert not c.router.thread.is_alive()
        with pytest.raises(ConnectionError):
            c.read(b"/after")


def test_monitor_waiting_when_connection_dies():
    with serve(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        m = c.monitor()
        m.watch(b"/w", b"tok")
        assert m.get(timeout=BOUND) == (b"/w", b"tok")
        fake.connections[0].close()
        with pytest.raises(ConnectionError):
            m.get(timeout=BOUND)
        # And again: a dead monitor keeps saying so.
        with pytest.raises(ConnectionError):
            m.get(timeout=BOUND)


def test_event_flood_for_unknown_tokens_is_dropped():
    def flood_then_reply(conn, request):
        event = bytes(Packet(Op.WATCH_EVENT, b"/x" + NUL + b"nobody" + NUL))
        conn.send_raw(event * 20000)
        conn.reply(request, b"value")

    with serve(on_read(flood_then_reply)) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        m = c.monitor()
        m.watch(b"/w", b"mine")
        assert m.get(timeout=BOUND) == (b"/w", b"mine")
        assert c.read(b"/a") == b"value"
        assert m.events.empty()
        assert c.router.stats()["watch_tokens"] == {b"mine"}
        assert c.router.stats()["in_flight"] == 0


def test_watch_reply_with_request_id_zero_completes_the_watch():
    def quirky(conn, request):
        if request.op in (Op.WATCH, Op.UNWATCH):
            conn.reply(request, b"OK\0", rq_id=0, tx_id=0)
        else:
            honest(conn, request)

    with serve(quirky) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        m = c.monitor()
        m.watch(b"/w", b"tok")
        m.unwatch(b"/w", b"tok")
        assert c.read(b"/a") == b"value"
        assert m.watched == set()


def test_error_with_request_id_zero_goes_to_the_waiting_watch():
    def refuse(conn, request):
        if request.op == Op.WATCH:
            conn.reply(request, b"EINVAL\0", op=Op.ERROR, rq_id=0, tx_id=0)
        else:
            honest(conn, request)

    with serve(refuse) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        m = c.monitor()
        with pytest.raises(PyXSError) as info:
            m.watch(b"/w", b"tok")
        assert info.value.args[0] == errno.EINVAL
        assert "WATCH" in str(info.value) and "/w" in str(info.value)
        assert c.read(b"/a") == b"value"


def test_monitor_without_watches_learns_of_a_dead_connection():
    with serve(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        idle = c.monitor()
        c.read(b"/a")
        fake.connections[0].close()
        with pytest.raises(ConnectionError):
            idle.get(timeout=BOUND)
        # A monitor made after the end fails at once too.
        with pytest.raises(ConnectionError):
            c.monitor().get(timeout=BOUND)


def test_connect_to_a_daemon_that_never_accepts_times_out(tmp_path):
    import socket

    from pyxs.exceptions import TimeoutError

    path = str(tmp_path / "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog, as a stopped daemon's fills up
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(path)
            except BlockingIOError:
                break
        c = Client(unix_socket_path=path, timeout=0.2)
        with pytest.raises(TimeoutError, match="no answer within 0.2 s"):
            c.connect()
        assert not c.router.thread.is_alive()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
