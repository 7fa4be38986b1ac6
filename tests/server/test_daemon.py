"""Socket-level tests of the embedded daemon, with raw packets."""

import errno
import os
import socket

import pytest

from pyxs._internal import HEADER, Op, Packet, PacketDecoder
from pyxs.server import Quotas, XenStoreServer
from pyxs.server.session import Outbox
from pyxs.testing import XenStoreDaemon
from pyxs.testing.inprocess import inprocess_client

from .rawclient import RawClient


def test_initial_tree(dom0) -> None:
    assert dom0.call(Op.DIRECTORY, b"/\x00") == b"tool\x00"
    assert dom0.call(Op.DIRECTORY, b"/tool\x00") == b"xenstored\x00"
    assert dom0.call(Op.GET_PERMS, b"/\x00") == b"n0\x00"
    assert dom0.call(Op.READ, b"/local\x00") == b"ENOENT"


def test_reply_echoes_ids_and_errors_are_names(dom0) -> None:
    reply = dom0.request(Op.READ, b"/nope\x00", tx_id=0)
    assert reply.op == Op.ERROR and reply.payload == b"ENOENT\x00"
    reply = dom0.request(Op.READ, b"/tool\x00", tx_id=42)
    assert (reply.op, reply.tx_id, reply.payload) == (Op.ERROR, 42,
                                                      b"ENOENT\x00")


@pytest.mark.parametrize("op", [20, 15, 16, 23, 26, 99])
def test_unknown_ops_are_enosys(dom0, op) -> None:
    assert dom0.call(op, b"\x00") == b"ENOSYS"


@pytest.mark.parametrize("payload", [b"", b"/a", b"\x00", b"/a//b\x00",
                                     b"/a/\x00", b"/a b\x00", b"@x\x00",
                                     b"/" + b"a" * 2048 + b"\x00"])
def test_bad_paths_are_einval(dom0, payload) -> None:
    assert dom0.call(Op.READ, payload) == b"EINVAL"


def test_path_length_limit_skips_the_domain_home(dom0) -> None:
    assert dom0.call(Op.WRITE, b"/" + b"a" * 2047 + b"\x00") == b"OK\x00"
    home = b"/local/domain/12345/"
    assert dom0.call(Op.WRITE, home + b"a" * 2048 + b"\x00") == b"OK\x00"
    assert dom0.call(Op.WRITE, home + b"a" * 2049 + b"\x00") == b"EINVAL"


def test_packets_split_anywhere_are_reassembled(dom0) -> None:
    data = bytes(Packet(Op.WRITE, b"/split\x00value", rq_id=7)) + \
        bytes(Packet(Op.READ, b"/split\x00", rq_id=8))
    for byte in data:
        dom0.sock.send(bytes([byte]))
    assert dom0.reply(7).payload == b"OK\x00"
    assert dom0.reply(8).payload == b"value"


def test_oversized_payload_disconnects(dom0) -> None:
    dom0.sock.sendall(HEADER.pack(Op.READ, 1, 0, 4097))
    with pytest.raises(EOFError):
        dom0.reply(1)


def test_relative_paths_live_under_the_domain_home(dom0) -> None:
    assert dom0.call(Op.WRITE, b"rel\x00v") == b"OK\x00"
    assert dom0.call(Op.READ, b"/local/domain/0/rel\x00") == b"v"


def test_watch_fires_at_once_and_for_changes_below(dom0, connect) -> None:
    watcher = connect()
    assert watcher.call(Op.WATCH, b"/w\x00tok\x00") == b"OK\x00"
    assert watcher.wait_event() == (b"/w", b"tok")
    assert watcher.call(Op.WATCH, b"/w\x00tok\x00") == b"EEXIST"
    dom0.call(Op.WRITE, b"/w/a/b\x00v")
    assert watcher.take_events() == {(b"/w/a/b", b"tok")}
    dom0.call(Op.WRITE, b"/wx\x00v")  # a sibling prefix is not below /w
    assert watcher.take_events() == set()
    assert watcher.call(Op.UNWATCH, b"/w\x00tok\x00") == b"OK\x00"
    assert watcher.call(Op.UNWATCH, b"/w\x00tok\x00") == b"ENOENT"


def test_removing_a_parent_fires_existing_watched_descendants(dom0,
                                                              connect) -> None:
    watcher = connect()
    dom0.call(Op.WRITE, b"/p/q/r\x00v")
    watcher.call(Op.WATCH, b"/p/q\x00deep\x00")
    watcher.call(Op.WATCH, b"/p/none\x00gone\x00")
    watcher.take_events()
    dom0.call(Op.RM, b"/p\x00")
    assert watcher.take_events() == {(b"/p/q", b"deep")}


def test_transaction_events_fire_on_commit_only(dom0, connect) -> None:
    watcher = connect()
    watcher.call(Op.WATCH, b"/tx\x00t\x00")
    watcher.take_events()
    tx_id = int(dom0.call(Op.TRANSACTION_START, b"\x00")[:-1])
    assert tx_id == 1
    dom0.call(Op.WRITE, b"/tx/a\x00v", tx_id)
    assert dom0.call(Op.READ, b"/tx/a\x00") == b"ENOENT"
    assert watcher.take_events() == set()
    assert dom0.call(Op.TRANSACTION_END, b"T\x00", tx_id) == b"OK\x00"
    assert watcher.take_events() == {(b"/tx/a", b"t")}
    assert dom0.call(Op.READ, b"/tx/a\x00", tx_id) == b"ENOENT"


def test_transaction_conflict_is_eagain_and_ends_it(dom0, connect) -> None:
    other = connect()
    dom0.call(Op.WRITE, b"/c\x00v")
    tx_id = int(dom0.call(Op.TRANSACTION_START, b"\x00")[:-1])
    assert dom0.call(Op.READ, b"/c\x00", tx_id) == b"v"
    other.call(Op.WRITE, b"/c\x00changed")
    assert dom0.call(Op.TRANSACTION_END, b"T\x00", tx_id) == b"EAGAIN"
    assert dom0.call(Op.TRANSACTION_END, b"F\x00", tx_id) == b"ENOENT"


def test_transaction_misuse(dom0) -> None:
    tx_id = int(dom0.call(Op.TRANSACTION_START, b"\x00")[:-1])
    assert dom0.call(Op.TRANSACTION_START, b"\x00", tx_id) == b"EBUSY"
    assert dom0.call(Op.TRANSACTION_END, b"X\x00", tx_id) == b"EINVAL"
    assert dom0.call(Op.TRANSACTION_END, b"T\x00", 99) == b"ENOENT"


def test_domain_ops_and_special_events(dom0, connect) -> None:
    watcher = connect()
    watcher.call(Op.WATCH, b"@introduceDomain\x00in\x00")
    watcher.call(Op.WATCH, b"@releaseDomain\x00out\x00")
    watcher.take_events()
    assert dom0.call(Op.INTRODUCE, b"5\x001\x002\x00") == b"OK\x00"
    assert watcher.take_events() == {(b"@introduceDomain", b"in")}
    assert dom0.call(Op.INTRODUCE, b"5\x001\x002\x00") == b"OK\x00"
    assert watcher.take_events() == set()
    assert dom0.call(Op.IS_DOMAIN_INTRODUCED, b"5\x00") == b"T\x00"
    assert dom0.call(Op.GET_DOMAIN_PATH, b"5\x00") == b"/local/domain/5\x00"
    assert dom0.call(Op.SET_TARGET, b"5\x007\x00") == b"ENOENT"
    assert dom0.call(Op.RESUME, b"0\x00") == b"EINVAL"
    assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
    assert watcher.take_events() == {(b"@releaseDomain", b"out")}
    assert dom0.call(Op.RELEASE, b"5\x00") == b"ENOENT"
    assert dom0.call(Op.RELEASE, b"0\x00") == b"EINVAL"


def test_control(dom0, connect) -> None:
    assert dom0.call(Op.CONTROL, b"print\x00hi\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"help\x00").startswith(b"check")
    assert dom0.call(Op.CONTROL, b"bogus\x00") == b"EINVAL"
    assert connect(3).call(Op.CONTROL, b"print\x00x\x00") == b"EACCES"


def test_unprivileged_domain_connection(dom0, connect) -> None:
    dom0.call(Op.WRITE, b"/local/domain/5\x00")
    dom0.call(Op.SET_PERMS, b"/local/domain/5\x00n5\x00")
    guest = connect(5)
    assert guest.call(Op.READ, b"/tool\x00") == b"EACCES"
    assert guest.call(Op.WRITE, b"/elsewhere\x00v") == b"EACCES"
    assert guest.call(Op.WRITE, b"a/b\x00v") == b"OK\x00"
    assert guest.call(Op.GET_PERMS, b"a/b\x00") == b"n5\x00"
    for op, payload in [(Op.INTRODUCE, b"7\x001\x001\x00"),
                        (Op.RELEASE, b"7\x00"), (Op.RESUME, b"7\x00"),
                        (Op.SET_TARGET, b"7\x005\x00"),
                        (Op.IS_DOMAIN_INTRODUCED, b"7\x00"),
                        (Op.SET_PERMS, b"@releaseDomain\x00n0\x00")]:
        assert guest.call(op, payload) == b"EACCES", op
    assert guest.call(Op.GET_DOMAIN_PATH, b"7\x00") == b"/local/domain/7\x00"


def test_unprivileged_watches_see_only_readable_nodes(dom0, connect) -> None:
    dom0.call(Op.WRITE, b"/local/domain/5\x00")
    dom0.call(Op.SET_PERMS, b"/local/domain/5\x00n5\x00")
    guest = connect(5)
    guest.call(Op.WATCH, b"/\x00root\x00")
    guest.call(Op.WATCH, b"rel\x00mine\x00")
    guest.call(Op.WATCH, b"@introduceDomain\x00in\x00")
    # the immediate events come regardless of permissions
    assert guest.take_events() == {(b"/", b"root"), (b"rel", b"mine"),
                                   (b"@introduceDomain", b"in")}
    dom0.call(Op.WRITE, b"/hidden\x00v")
    guest.call(Op.WRITE, b"rel/x\x00v")
    dom0.call(Op.INTRODUCE, b"8\x001\x001\x00")
    assert guest.take_events() == {(b"/local/domain/5/rel/x", b"root"),
                                   (b"rel/x", b"mine")}
    dom0.call(Op.SET_PERMS, b"@introduceDomain\x00n0\x00r5\x00")
    dom0.call(Op.INTRODUCE, b"9\x001\x001\x00")
    assert guest.take_events() == {(b"@introduceDomain", b"in")}


def test_unprivileged_quotas_match_c(server, dom0, connect) -> None:
    guest = connect(5)
    started = [guest.call(Op.TRANSACTION_START, b"\x00") for _ in range(12)]
    assert started[10] == b"11\x00" and started[11] == b"ENOSPC"
    for index in range(129):
        assert guest.call(Op.WATCH, b"w%d\x00t\x00" % index) == b"OK\x00"
    assert guest.call(Op.WATCH, b"w999\x00t\x00") == b"E2BIG"
    assert guest.call(Op.RESET_WATCHES, b"\x00") == b"OK\x00"
    assert guest.call(Op.WATCH, b"w999\x00t\x00") == b"OK\x00"


def test_release_closes_the_domains_connections(dom0, connect) -> None:
    guest = connect(6)
    assert dom0.call(Op.IS_DOMAIN_INTRODUCED, b"6\x00") == b"T\x00"
    assert dom0.call(Op.RELEASE, b"6\x00") == b"OK\x00"
    guest.sock.settimeout(5)
    assert guest.sock.recv(100) == b""


def test_identical_queued_events_are_dropped() -> None:
    outbox = Outbox(max_events=3)
    assert outbox.event(b"/a", b"t")
    assert not outbox.event(b"/a", b"t")
    assert outbox.event(b"/b", b"t") and outbox.event(b"/c", b"t")
    assert not outbox.event(b"/d", b"t") and outbox.dropped == 1
    while outbox:
        outbox.advance(len(outbox.head()))
    assert outbox.event(b"/a", b"t")


def test_a_client_that_never_reads_does_not_grow_the_daemon(
        server, dom0, connect) -> None:
    sleeper = connect()
    sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.call(Op.WATCH, b"/flood\x00t\x00")
    for index in range(3000):
        dom0.send(Op.WRITE, b"/flood/k%d\x00v" % index)
    dom0.sync()
    assert dom0.call(Op.READ, b"/flood/k2999\x00") == b"v"
    outboxes = [s.outbox for s in server.core.sessions if s.watches]
    assert outboxes and outboxes[0].dropped > 0
    assert outboxes[0].size < 2048 * 64


def test_socket_file_listener_and_domain_listener(tmp_path) -> None:
    path = str(tmp_path / "sock")
    guest_path = str(tmp_path / "guest")
    with XenStoreServer(path) as server:
        server.add_listener(guest_path, domid=4)
        client = RawClient(path)
        assert client.call(Op.GET_DOMAIN_PATH, b"0\x00") \
            == b"/local/domain/0\x00"
        guest = RawClient(guest_path)
        assert guest.call(Op.READ, b"/tool\x00") == b"EACCES"
        client.close()
        guest.close()
    assert not os.path.exists(path) and not os.path.exists(guest_path)


def test_persistence_round_trip(tmp_path) -> None:
    store_file = str(tmp_path / "store.json")
    with XenStoreServer(persist=store_file) as server:
        client = RawClient(server.socketpair())
        client.call(Op.WRITE, b"/kept/key\x00\xff\x00bytes")
        client.call(Op.SET_PERMS, b"/kept\x00r3\x00w4\x00")
        client.call(Op.SET_PERMS, b"@releaseDomain\x00n0\x00r3\x00")
        client.close()
    assert os.path.exists(store_file)
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".")]
    with XenStoreServer(persist=store_file) as server:
        client = RawClient(server.socketpair())
        assert client.call(Op.READ, b"/kept/key\x00") == b"\xff\x00bytes"
        assert client.call(Op.GET_PERMS, b"/kept\x00") == b"r3\x00w4\x00"
        assert client.call(Op.DIRECTORY, b"/\x00") == b"tool\x00kept\x00"
        client.close()
        assert server.core.store.special_perms[b"@releaseDomain"][1].domid \
            == 3


def test_quotas_are_configurable() -> None:
    with XenStoreServer(quotas=Quotas(watches=0)) as server:
        guest = RawClient(server.socketpair(3))
        assert guest.call(Op.WATCH, b"a\x00t\x00") == b"OK\x00"
        assert guest.call(Op.WATCH, b"b\x00t\x00") == b"E2BIG"
        guest.close()


def test_command_line_daemon_starts_and_stops_cleanly() -> None:
    daemon = XenStoreDaemon("embedded").start()
    try:
        client = RawClient(daemon.socket_path)
        assert client.call(Op.WRITE, b"/cli\x00v") == b"OK\x00"
        assert client.call(Op.READ, b"/cli\x00") == b"v"
        client.close()
        process = daemon.process
        socket_path = daemon.socket_path
        process.terminate()
        assert process.wait(10) == 0
        assert not os.path.exists(socket_path)
    finally:
        daemon.stop()


def test_command_line_options(tmp_path) -> None:
    store_file = str(tmp_path / "store.json")
    guest_path = str(tmp_path / "guest")
    args = ["--domain-socket", "7=" + guest_path, "--persist", store_file]
    daemon = XenStoreDaemon("embedded", args=args).start()
    try:
        RawClient(daemon.socket_path).call(Op.WRITE, b"/saved\x00yes")
        guest = RawClient(guest_path)
        assert guest.call(Op.GET_DOMAIN_PATH, b"7\x00") == \
            b"/local/domain/7\x00"
        assert guest.call(Op.READ, b"/saved\x00") == b"EACCES"
        guest.close()
        daemon.process.terminate()
        assert daemon.process.wait(10) == 0
    finally:
        daemon.stop()
    with XenStoreServer(persist=store_file) as server:
        client = RawClient(server.socketpair())
        assert client.call(Op.READ, b"/saved\x00") == b"yes"
        client.close()


def test_decoder_sanity_for_the_raw_client() -> None:
    frame = bytes(Packet(Op.READ, b"x", rq_id=1))
    assert PacketDecoder().feed(frame)[0].payload == b"x"


def test_in_process_clients_need_no_socket_file():
    from pyxs.exceptions import PyXSError

    with XenStoreServer() as server:  # no socket_path: nothing on disk
        with inprocess_client(server, timeout=10) as dom0:
            dom0.mkdir(b"/local/domain/7")
            dom0.set_perms(b"/local/domain/7", [b"n7"])
            dom0.write(b"/secret", b"s")
            with inprocess_client(server, 7, timeout=10) as guest:
                guest.write(b"data", b"mine")  # relative to its home
                assert dom0.read(b"/local/domain/7/data") == b"mine"
                with pytest.raises(PyXSError) as info:
                    guest.read(b"/secret")
                assert info.value.errno == errno.EACCES
        assert server.socket_path is None
