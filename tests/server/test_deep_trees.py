"""Trees as deep as the path-length limit allows, built by a guest.

A 998-level relative path (1,995 bytes) is legal for an unprivileged
domain; every tree operation on it must work without recursion (Python's
default recursion limit is 1,000 frames).
"""

import os

from pyxs._internal import Op
from pyxs.server import XenStoreServer
from pyxs.server.persist import dumps, loads
from pyxs.server.store import Store

from .rawclient import RawClient

GUEST = 5
#: 998 levels, 1,995 bytes: under the 2,048-byte relative limit.
DEEP = b"/".join([b"a"] * 998)


def _guest_home(dom0: RawClient) -> None:
    assert dom0.call(Op.MKDIR, b"/local/domain/5\x00") == b"OK\x00"
    assert dom0.call(Op.SET_PERMS, b"/local/domain/5\x00n5\x00") == b"OK\x00"


def test_deep_write_then_rm_by_a_guest(dom0, connect) -> None:
    _guest_home(dom0)
    guest = connect(GUEST)
    assert len(DEEP) == 1995
    assert guest.call(Op.WRITE, DEEP + b"\x00v") == b"OK\x00"
    assert guest.call(Op.READ, DEEP + b"\x00") == b"v"
    assert guest.call(Op.RM, b"a\x00") == b"OK\x00"
    # the daemon is still there for everybody
    assert guest.call(Op.READ, b"a\x00") == b"ENOENT"
    assert connect(0).call(Op.DIRECTORY, b"/local/domain/5\x00") == b""


def test_deep_tree_in_a_transaction_and_watched(dom0, connect) -> None:
    _guest_home(dom0)
    guest = connect(GUEST)
    watcher = connect(0)
    watcher.call(Op.WATCH, b"/local/domain/5/" + DEEP + b"\x00deep\x00")
    watcher.take_events()
    tx = int(guest.call(Op.TRANSACTION_START, b"\x00")[:-1])
    assert guest.call(Op.WRITE, DEEP + b"\x00v", tx) == b"OK\x00"
    assert guest.call(Op.TRANSACTION_END, b"T\x00", tx) == b"OK\x00"
    assert watcher.take_events() == {(b"/local/domain/5/" + DEEP, b"deep")}
    tx = int(guest.call(Op.TRANSACTION_START, b"\x00")[:-1])
    assert guest.call(Op.RM, b"a\x00", tx) == b"OK\x00"
    assert guest.call(Op.TRANSACTION_END, b"T\x00", tx) == b"OK\x00"
    assert watcher.take_events() == {(b"/local/domain/5/" + DEEP, b"deep")}


def test_release_of_a_domain_owning_a_deep_tree(dom0, connect) -> None:
    _guest_home(dom0)
    guest = connect(GUEST)
    assert guest.call(Op.WRITE, DEEP + b"\x00v") == b"OK\x00"
    assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
    assert dom0.call(Op.READ, b"/local/domain/5\x00") == b"ENOENT"
    assert dom0.call(Op.DIRECTORY, b"/local/domain\x00") == b""


def test_dom0_rm_and_listing_of_a_deep_absolute_tree(dom0) -> None:
    # absolute: 3,072 bytes at most outside /local/domain/<id>/, and the
    # path_max of 2,048 applies: 1,023 levels of "/b"
    deep = b"/b" * 1023
    assert dom0.call(Op.WRITE, deep + b"\x00v") == b"OK\x00"
    assert dom0.call(Op.DIRECTORY, deep[:-2] + b"\x00") == b"b\x00"
    assert dom0.call(Op.DIRECTORY_PART, deep[:-2] + b"\x000\x00") \
        .endswith(b"b\x00\x00")
    assert dom0.call(Op.RM, b"/b\x00") == b"OK\x00"
    assert dom0.call(Op.READ, b"/b\x00") == b"ENOENT"


def test_deep_tree_persists(tmp_path) -> None:
    store_file = str(tmp_path / "store")
    with XenStoreServer(persist=store_file) as server:
        dom0 = RawClient(server.socketpair())
        assert dom0.call(Op.WRITE, b"/b" * 1023 + b"\x00deep") == b"OK\x00"
        dom0.close()
    with XenStoreServer(persist=store_file) as server:
        dom0 = RawClient(server.socketpair())
        assert dom0.call(Op.READ, b"/b" * 1023 + b"\x00") == b"deep"
        dom0.close()
    assert os.path.exists(store_file)


def test_deep_tree_snapshot_round_trip() -> None:
    server = XenStoreServer()
    try:
        dom0 = RawClient(server.socketpair())
        server.start()
        dom0.call(Op.WRITE, b"/b" * 1023 + b"\x00deep")
        dom0.close()
    finally:
        server.stop()
    copy = Store()
    loads(copy, dumps(server.core.store))
    assert copy.nodes[b"/b" * 1023].value == b"deep"


def test_the_daemon_process_survives_a_guests_deep_rm() -> None:
    from pyxs.testing import XenStoreDaemon

    with XenStoreDaemon("embedded", domains=[GUEST]) as daemon:
        dom0 = RawClient(daemon.socket_path)
        _guest_home(dom0)
        guest = RawClient(daemon.domain_socket(GUEST))
        assert guest.call(Op.WRITE, DEEP + b"\x00v") == b"OK\x00"
        assert guest.call(Op.RM, b"a\x00") == b"OK\x00"
        assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
        # the home was the guest's own: RELEASE removed it
        assert dom0.call(Op.DIRECTORY, b"/local/domain\x00") == b""
        assert daemon.running
        guest.close()
        dom0.close()
