"""pyxs over XenBus, without Xen: a pseudo-terminal relayed to real daemons
(:class:`pyxs.testing.xenbus.XenBusRelay`), also emulating old kernels."""

import errno
import os
import termios
import threading
from typing import Any, Iterator, List

import pytest

from pyxs import Client, Router
from pyxs._internal import HEADER, Op, Packet
from pyxs.connection import XenBusConnection
from pyxs.exceptions import (
    ConnectionError,
    InvalidPayload,
    PyXSError,
    TimeoutError,
)
from pyxs.testing import XenStoreDaemon
from pyxs.testing.xenbus import XenBusRelay

TIMEOUT = 30.0
#: Bytes a terminal line discipline would eat or translate if not raw.
TTY_SPECIAL = b"\x0a\x0d\x11\x13\x03\x7f\x00\x04\x1a\x1c\x08\x15\xff\x80"

MODES = {
    "plain": {},
    "old-kernel": {"watch_rq_id_zero": True, "bare_events": True},
    "chunked": {"chunk": 7, "seed": 1},
}


@pytest.fixture(params=sorted(MODES))
def relay(request: Any, daemon: XenStoreDaemon) -> Iterator[XenBusRelay]:
    """A relay to the daemon in each mode: plain, old-kernel, chunked."""
    with XenBusRelay(daemon.socket_path, **MODES[request.param]) as running:
        yield running


@pytest.fixture
def bus(relay: XenBusRelay) -> Iterator[Client]:
    """A client connected through the relay's device."""
    with Client(xen_bus_path=relay.device, timeout=TIMEOUT) as connected:
        yield connected


def quirky(daemon: XenStoreDaemon, **options: Any) -> XenBusRelay:
    """A relay answering WATCH/UNWATCH with request id 0."""
    return XenBusRelay(daemon.socket_path, watch_rq_id_zero=True, **options)


# -- the device itself -------------------------------------------------------

def test_device_is_a_raw_terminal(relay: XenBusRelay) -> None:
    fd = os.open(relay.device, os.O_RDWR | os.O_NOCTTY)
    try:
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
    finally:
        os.close(fd)
    assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR |
                        termios.IXON | termios.IXOFF | termios.ISTRIP |
                        termios.PARMRK)
    assert not oflag & termios.OPOST
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG |
                        termios.IEXTEN)
    assert cflag & termios.CSIZE == termios.CS8
    assert cc[termios.VMIN] == 1 and cc[termios.VTIME] == 0


def test_special_bytes_survive_both_ways(relay: XenBusRelay) -> None:
    connection = XenBusConnection(relay.device)
    connection.connect()
    try:
        # Special bytes in the header fields and the payload, both ways.
        value = TTY_SPECIAL * 3 + bytes(range(256))
        rq_id = int.from_bytes(b"\x0a\x0d\x11\x13", "little")
        connection.send(Packet(Op.WRITE, b"/tty/v\x00" + value, rq_id))
        reply = connection.recv()
        assert (reply.op, reply.rq_id, reply.payload) == \
            (Op.WRITE, rq_id, b"OK\x00")
        rq_id = int.from_bytes(b"\x03\x7f\x00\xff", "little")
        connection.send(Packet(Op.READ, b"/tty/v\x00", rq_id))
        reply = connection.recv()
        assert (reply.op, reply.rq_id, reply.payload) == \
            (Op.READ, rq_id, value)
    finally:
        connection.close()


# -- core operations ---------------------------------------------------------

def test_core_operations(bus: Client, daemon: XenStoreDaemon) -> None:
    bus.write(b"/bus/a", b"1")
    bus.write(b"/bus/b/c", TTY_SPECIAL)
    assert bus.read(b"/bus/b/c") == TTY_SPECIAL
    assert sorted(bus.list(b"/bus")) == [b"a", b"b"]
    assert bus.exists(b"/bus/a") and not bus.exists(b"/bus/z")
    bus.mkdir(b"/bus/d")
    bus.set_perms(b"/bus/d", [b"b1", b"r2"])
    assert bus.get_perms(b"/bus/d") == [b"b1", b"r2"]
    with pytest.raises(PyXSError) as raised:
        bus.read(b"/bus/missing")
    assert raised.value.args[0] == errno.ENOENT
    assert sorted((p, v) for p, v, _ in bus.walk(b"/bus")) == [
        (b"/bus", b""), (b"/bus/a", b"1"), (b"/bus/b", b""),
        (b"/bus/b/c", TTY_SPECIAL), (b"/bus/d", b"")]
    bus.delete(b"/bus/b")
    assert sorted(bus.list(b"/bus")) == [b"a", b"d"]
    with daemon.client(timeout=TIMEOUT) as other:
        assert other.read(b"/bus/a") == b"1"


def test_transactions(bus: Client, daemon: XenStoreDaemon) -> None:
    bus.write(b"/tx/n", b"0")
    bus.transaction()
    bus.write(b"/tx/n", b"1")
    with daemon.client(timeout=TIMEOUT) as other:
        assert other.read(b"/tx/n") == b"0"
        assert bus.commit()
        assert other.read(b"/tx/n") == b"1"
        bus.transaction()
        assert bus.read(b"/tx/n") == b"1"
        bus.write(b"/tx/n", b"2")
        other.write(b"/tx/n", b"conflict")
        assert not bus.commit()  # EAGAIN
    assert bus.read(b"/tx/n") == b"conflict"
    assert bus.run_transaction(
        lambda tx: tx.write(b"/tx/m", tx.read(b"/tx/n") + b"!")) is None
    assert bus.read(b"/tx/m") == b"conflict!"


def test_router_over_xenbus_connection(relay: XenBusRelay) -> None:
    router = Router(XenBusConnection(relay.device))
    with Client(router=router, timeout=TIMEOUT) as first, \
            Client(router=router, timeout=TIMEOUT) as second:
        first.write(b"/shared", b"1")
        assert second.read(b"/shared") == b"1"
    assert not router.is_connected


# -- watches -----------------------------------------------------------------

def test_monitor(bus: Client, relay: XenBusRelay,
                 daemon: XenStoreDaemon) -> None:
    with bus.monitor() as monitor, daemon.client(timeout=TIMEOUT) as other:
        monitor.watch(b"/mon/a", b"ta")
        monitor.watch(b"/mon/b", b"tb")
        assert {monitor.get(timeout=TIMEOUT), monitor.get(timeout=TIMEOUT)} \
            == {(b"/mon/a", b"ta"), (b"/mon/b", b"tb")}
        other.write(b"/mon/a/x", b"1")
        assert monitor.get(timeout=TIMEOUT) == (b"/mon/a/x", b"ta")
        monitor.unwatch(b"/mon/a", b"ta")
        # Events of one connection keep their order: once /mon/b's event
        # is here, one for the removed watch would have come before it.
        other.write(b"/mon/a/y", b"1")
        other.write(b"/mon/b/y", b"1")
        assert monitor.get(timeout=TIMEOUT, unwatched=True) == \
            (b"/mon/b/y", b"tb")
    if relay.watch_rq_id_zero:
        # 2 WATCH + 1 UNWATCH + 1 UNWATCH when the monitor closed.
        assert relay.rewritten_replies == 4
        assert relay.rewritten_events == 4
    else:
        assert relay.rewritten_replies == relay.rewritten_events == 0


def test_quirk_error_reply_to_unwatch(daemon: XenStoreDaemon) -> None:
    with quirky(daemon) as relay, \
            Client(xen_bus_path=relay.device, timeout=TIMEOUT) as bus, \
            bus.monitor() as monitor:
        with pytest.raises(PyXSError):
            monitor.unwatch(b"/never/watched", b"tok")
        monitor.watch(b"/after", b"tok")
        assert monitor.get(timeout=TIMEOUT) == (b"/after", b"tok")
        bus.write(b"/after/x", b"1")
        assert monitor.get(timeout=TIMEOUT) == (b"/after/x", b"tok")
    assert relay.rewritten_replies == 3


def test_quirk_reply_for_an_abandoned_request(daemon: XenStoreDaemon) -> None:
    # A WATCH whose caller gave up must still consume its rq_id-0 reply;
    # otherwise that reply would be handed to the next WATCH's caller.
    with quirky(daemon) as relay, \
            Client(xen_bus_path=relay.device, timeout=TIMEOUT) as bus:
        router = bus.router
        relay.pause()
        failing = router.submit(Op.UNWATCH, 0, b"/none\x00tok\x00")
        with pytest.raises(TimeoutError):
            failing.get(0)
        working = router.submit(Op.WATCH, 0, b"/some\x00tok\x00")
        relay.resume()
        reply = working.get(TIMEOUT)
        assert (reply.op, reply.payload) == (Op.WATCH, b"OK\x00")
        assert bus.read(b"/some", b"-") == b"-"  # still in step
    assert relay.rewritten_replies == 2


def test_concurrent_watches_with_quirk(daemon: XenStoreDaemon) -> None:
    errors: List[BaseException] = []
    with quirky(daemon, chunk=5, seed=3) as relay, \
            Client(xen_bus_path=relay.device, timeout=TIMEOUT) as bus:

        def work(n: int) -> None:
            try:
                with bus.monitor() as monitor:
                    for round_ in range(5):
                        path = b"/cw/%d/%d" % (n, round_)
                        monitor.watch(path, b"t%d" % n)
                        assert monitor.get(timeout=TIMEOUT) == \
                            (path, b"t%d" % n)
                        bus.write(path, b"x")
                        assert monitor.get(timeout=TIMEOUT) == \
                            (path, b"t%d" % n)
                        monitor.unwatch(path, b"t%d" % n)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,))
                   for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
    assert relay.rewritten_replies == 12 * 5 * 2


# -- load and limits ---------------------------------------------------------

def test_concurrent_requests(bus: Client) -> None:
    errors: List[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                value = b"%d-%d-" % (n, i) + TTY_SPECIAL
                bus.write(b"/load/%d/%d" % (n, i), value)
                assert bus.read(b"/load/%d/%d" % (n, i)) == value
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert len(bus.list(b"/load")) == 16
    assert all(len(bus.list(b"/load/%d" % n)) == 40 for n in range(16))


def test_largest_packets_both_ways(bus: Client, relay: XenBusRelay,
                                   monkeypatch: Any) -> None:
    connection = bus.router.connection
    sizes: List[int] = []
    real_write = os.write

    def recording_write(fd: int, data: Any) -> int:
        if fd == connection.fd:
            sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    # WATCH with path, NUL, token, NUL filling the largest request Linux's
    # xenbus device buffers (4096 bytes, header included), so the request
    # is one write of 4096 bytes. (A WRITE cannot: oxenstored limits values
    # to 2048 bytes.) One byte more is refused before anything is sent.
    path = b"/max/v"
    token = (b"tok" * 1400)[:4096 - HEADER.size - len(path) - 2]
    with bus.monitor() as monitor:
        with pytest.raises(InvalidPayload, match="4080-byte limit"):
            monitor.watch(path, token + b"x")
        assert sizes == []
        monitor.watch(path, token)
        assert sizes == [4096]
        assert monitor.get(timeout=TIMEOUT) == (path, token)
        value = (TTY_SPECIAL * 400)[:2048]
        bus.write(path, value)
        assert monitor.get(timeout=TIMEOUT) == (path, token)
        assert bus.read(path) == value
    # Reply: a listing of exactly 4096 bytes (16 names of 255 + NUL).
    names = [(b"%02d" % n) * 127 + b"n" for n in range(16)]
    for name in names:
        bus.write(b"/max/dir/" + name, b"")
    assert sum(len(name) + 1 for name in names) == 4096
    assert sorted(bus.list(b"/max/dir")) == names
    assert all(size <= 4096 for size in sizes)
    if relay.chunk:
        assert relay.writes > relay.replies  # packets went in pieces


def test_one_message_per_write_even_when_pipelined(
        bus: Client, monkeypatch: Any) -> None:
    # Linux's xenbus device handles one message per write() and drops what
    # follows it, so pipelined requests (walk) must not share a write.
    for i in range(40):
        bus.write(b"/pipe/n%d" % i, b"v")
    connection = bus.router.connection
    writes: List[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: Any) -> int:
        if fd == connection.fd:
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    assert len(list(bus.walk(b"/pipe"))) == 41
    assert len(writes) == 2 * 41  # a READ and a DIRECTORY per node
    for data in writes:
        assert len(data) == HEADER.size + HEADER.unpack_from(data)[3]


def test_chunked_stream_gives_short_reads(daemon: XenStoreDaemon,
                                         monkeypatch: Any) -> None:
    reads: List[int] = []
    real_reader = XenBusConnection._reader

    def recording_reader(self: XenBusConnection) -> Any:
        read = real_reader(self)

        def recording_read(size: int) -> bytes:
            data = read(size)
            reads.append(len(data))
            return data
        return recording_read

    monkeypatch.setattr(XenBusConnection, "_reader", recording_reader)
    with XenBusRelay(daemon.socket_path, chunk=7, seed=2) as relay, \
            Client(xen_bus_path=relay.device, timeout=TIMEOUT) as bus:
        for i in range(200):
            bus.write(b"/short/%d" % i, b"v" * 50)
            assert bus.read(b"/short/%d" % i) == b"v" * 50
        replies = relay.replies
    # Replies arrive as 7-byte pieces: the decoder must have met packets
    # spread over several reads (all 400 landing whole is not plausible).
    assert relay.writes > replies
    assert len(reads) > replies


# -- life cycle --------------------------------------------------------------

def _open_fds() -> List[str]:
    return sorted(os.listdir("/proc/self/fd"))


def test_stop_is_clean(daemon: XenStoreDaemon) -> None:
    before_fds = _open_fds()
    before_threads = set(threading.enumerate())
    relay = XenBusRelay(daemon.socket_path, chunk=3).start()
    bus = Client(xen_bus_path=relay.device, timeout=TIMEOUT)
    with bus:
        bus.write(b"/life", b"1")
        relay.stop()
        with pytest.raises(ConnectionError):
            bus.read(b"/life")
    relay.stop()  # idempotent
    assert not relay.running
    assert set(threading.enumerate()) <= before_threads
    assert _open_fds() == before_fds


def test_daemon_death_hangs_up_the_device(daemon: XenStoreDaemon) -> None:
    with XenBusRelay(daemon.socket_path) as relay, \
            Client(xen_bus_path=relay.device, timeout=TIMEOUT) as bus:
        bus.write(b"/x", b"1")
        daemon.kill()
        with pytest.raises(ConnectionError):
            bus.read(b"/x")
        relay._thread.join(TIMEOUT)  # type: ignore[union-attr]
        assert not relay.running


def test_relays_are_independent(daemon: XenStoreDaemon) -> None:
    with XenBusRelay(daemon.socket_path) as one, \
            XenBusRelay(daemon.socket_path, chunk=2) as two, \
            Client(xen_bus_path=one.device, timeout=TIMEOUT) as first, \
            Client(xen_bus_path=two.device, timeout=TIMEOUT) as second:
        assert one.device != two.device
        first.write(b"/p/1", b"a")
        second.write(b"/p/2", b"b")
        assert first.read(b"/p/2") == b"b" and second.read(b"/p/1") == b"a"
