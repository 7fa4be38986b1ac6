"""pyxs 0.4 and 0.3 code runs unchanged: the names, checks and keywords
that code written for them relies on (issue 17)."""

import errno
import warnings
from typing import Any, List

import pytest

import pyxs
from pyxs import Client, PyXSError, Router, RVar
from pyxs._internal import NUL, Op, Operations, Packet
from pyxs.connection import (
    PacketConnection,
    UnixSocketConnection,
    XenBusConnection,
    _UnixSocketTransport,
    _XenBusTransport,
)
from pyxs.exceptions import ConnectionError, UnexpectedPacket
from pyxs.testing import XenStoreDaemon

# -- names ------------------------------------------------------------------


@pytest.mark.parametrize("transport", [_XenBusTransport,
                                       _UnixSocketTransport])
def test_transport_of_a_missing_path_raises_connection_error(
        tmp_path: Any, transport: Any) -> None:
    with pytest.raises(ConnectionError) as info:
        transport(str(tmp_path / "unexisting"))
    assert "unexisting" in str(info.value)


def test_unix_socket_transport_moves_packets(daemon: XenStoreDaemon) -> None:
    transport = UnixSocketConnection(daemon.socket_path).create_transport()
    try:
        transport.send(bytes(Packet(Op.READ, b"/\x00", 7)))
        header = transport.recv(16)
        assert len(header) == 16 and header[:8] == \
            bytes(Packet(Op.READ, b"", 7))[:8]
        assert transport.fileno() >= 0
    finally:
        transport.close()


def test_xenbus_transport_moves_bytes(tmp_path: Any) -> None:
    fifo = tmp_path / "bus"
    fifo.write_bytes(b"")
    transport = XenBusConnection(str(fifo)).create_transport()
    try:
        transport.send(b"abc")
    finally:
        transport.close()
    assert fifo.read_bytes() == b"abc"


def test_pyxs04_aliases() -> None:
    assert Operations is Op
    assert PacketConnection is UnixSocketConnection.__mro__[1]
    assert issubclass(UnexpectedPacket, ConnectionError)
    assert pyxs.Error is PyXSError  # 0.4: it caught every pyxs error
    from pyxs._compat import xs
    assert pyxs.xs is xs


# -- execute_command checks its arguments as 0.4 did -------------------------


class ReplyingRouter:
    """A router double with only pyxs 0.4's interface: send() and
    terminate(); every request gets ``reply``."""

    def __init__(self, reply: Packet) -> None:
        self.reply = reply
        self.sent: List[Packet] = []

    def send(self, packet: Packet) -> RVar:
        self.sent.append(packet)
        rvar = RVar()
        rvar.set(self.reply)
        return rvar

    def terminate(self) -> None:
        pass


def test_execute_command_refuses_unprintable_bytes(
        client: Client) -> None:
    with pytest.raises(ValueError) as info:
        client.execute_command(Op.DEBUG, b"\x07foo" + NUL)
    assert isinstance(info.value, PyXSError)
    assert "printable ASCII" in str(info.value)
    with pytest.raises(ValueError):
        client.execute_command(Op.WRITE, b"/f\xffo" + NUL, b"v")
    # The value of a WRITE may hold any bytes; the client stays usable.
    client.execute_command(Op.WRITE, b"/foo/bar" + NUL, b"\x07\xff\x00z")
    assert client.read(b"/foo/bar") == b"\x07\xff\x00z"
    client.execute_command(Op.WRITE, b"/foo/bar" + NUL, b"")
    assert client.read(b"/foo/bar") == b""


def test_refused_command_sends_nothing() -> None:
    router = ReplyingRouter(Packet(Op.DEBUG, b"OK" + NUL, 0))
    c = Client(router=router)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.execute_command(Op.DEBUG, "caf\u00e9" + "\0")
    assert router.sent == []
    assert c.execute_command(Op.DEBUG, b"print" + NUL, b"x" + NUL) == b"OK"
    assert len(router.sent) == 1


# -- every reply's op and tx_id are checked, with any router ------------------


@pytest.mark.parametrize("reply", [
    Packet(Op.DEBUG, b"/local" + NUL, rq_id=0),
    Packet(Op.READ, b"/local" + NUL, rq_id=0, tx_id=42),
    Packet(Op.READ, b"v", rq_id=5, tx_id=42),
    Packet(Op.WRITE, b"OK" + NUL, rq_id=5),
], ids=["op", "tx_id-rq_id-0", "tx_id", "op-of-another-request"])
def test_mismatched_reply_raises_unexpected_packet(reply: Packet) -> None:
    c = Client(router=ReplyingRouter(reply))  # type: ignore[arg-type]
    with pytest.raises(UnexpectedPacket):
        c.execute_command(Op.READ, b"/local" + NUL)
    with pytest.raises(UnexpectedPacket):
        c.read(b"/local")


def test_matching_reply_through_a_send_only_router() -> None:
    c = Client(router=ReplyingRouter(  # type: ignore[arg-type]
        Packet(Op.READ, b"v", rq_id=3, tx_id=9)))
    c.tx_id = 9
    assert c.read(b"/x") == b"v"
    error = Client(router=ReplyingRouter(  # type: ignore[arg-type]
        Packet(Op.ERROR, b"ENOENT" + NUL, rq_id=3)))
    with pytest.raises(PyXSError) as info:
        error.read(b"/x")
    assert info.value.args[0] == errno.ENOENT


def test_old_xenbus_watch_reply_with_rq_id_0_is_accepted() -> None:
    # Old Linux xenbus answers WATCH with req_id 0 and no tx_id copied.
    c = Client(router=ReplyingRouter(  # type: ignore[arg-type]
        Packet(Op.WATCH, b"OK" + NUL, rq_id=0, tx_id=7)))
    c.tx_id = 7
    c.ack(Op.WATCH, b"/w" + NUL + b"t" + NUL)


# -- pyxs 0.3's keywords ------------------------------------------------------


def test_socket_timeout_keyword(daemon: XenStoreDaemon) -> None:
    with pytest.warns(DeprecationWarning, match=r"Client\(timeout=\.\.\.\)"):
        c = Client(unix_socket_path=daemon.socket_path, socket_timeout=7.5)
    assert c.timeout == 7.5
    with pytest.raises(TypeError), pytest.warns(DeprecationWarning):
        Client(timeout=1, socket_timeout=2)


def test_connection_keyword(daemon: XenStoreDaemon) -> None:
    connection = UnixSocketConnection(daemon.socket_path)
    with pytest.warns(DeprecationWarning, match=r"router=Router"):
        c = Client(connection=connection)
    assert isinstance(c.router, Router)
    assert c.router.connection is connection
    with c:
        c.write(b"/via/connection", b"1")
        assert c.read(b"/via/connection") == b"1"
    with pytest.raises(TypeError), pytest.warns(DeprecationWarning):
        Client(connection=connection, router=Router(connection))


def test_transaction_keyword_starts_one_once_connected(
        daemon: XenStoreDaemon) -> None:
    with pytest.warns(DeprecationWarning, match=r"transaction\(\)"):
        c = Client(unix_socket_path=daemon.socket_path, transaction=True)
    assert c.tx_id == 0
    with c:
        assert c.tx_id != 0
        c.write(b"/tx/node", b"v")
        with daemon.client() as other:
            assert not other.exists(b"/tx/node")
        assert c.commit()
    with daemon.client() as other:
        assert other.read(b"/tx/node") == b"v"


def test_unix_socket_connection_keywords(daemon: XenStoreDaemon) -> None:
    with pytest.warns(DeprecationWarning, match=r"Client\(timeout"):
        connection = UnixSocketConnection(path=daemon.socket_path,
                                          socket_timeout=5)
    assert connection.socket_timeout == 5
    with Client(router=Router(connection)) as c:
        assert c.exists(b"/")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        UnixSocketConnection(path=None)  # no 0.3 keyword: no warning
