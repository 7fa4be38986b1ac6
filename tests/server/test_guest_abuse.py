"""Unprivileged guests attacking the embedded daemon through its domain
sockets: quotas per domain across connections, backpressure on unread
replies, malformed input.
"""

import socket
import threading
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxs._internal import HEADER, Op
from pyxs.server import Quotas, XenStoreServer
from pyxs.testing import XenStoreDaemon

from .rawclient import RawClient

GUEST = 5


def _home(dom0: RawClient, domid: int = GUEST) -> None:
    home = b"/local/domain/%d\x00" % domid
    assert dom0.call(Op.MKDIR, home) == b"OK\x00"
    assert dom0.call(Op.SET_PERMS, home + b"n%d\x00" % domid) == b"OK\x00"


def test_watch_quota_counts_every_connection_of_a_domain(connect) -> None:
    guests = [connect(GUEST) for _ in range(5)]
    placed = 0
    for index in range(200):
        reply = guests[index % 5].call(Op.WATCH, b"w%d\x00t\x00" % index)
        if reply != b"OK\x00":
            assert reply == b"E2BIG"
            break
        placed += 1
    assert placed == 129  # C allows one more than the quota of 128
    # another domain has its own quota; dom0 has none
    assert connect(6).call(Op.WATCH, b"w\x00t\x00") == b"OK\x00"
    # closing a connection gives its watches back
    guests[0].close()
    guests[1].sync()
    assert guests[1].call(Op.WATCH, b"again\x00t\x00") == b"OK\x00"


def test_transaction_quota_counts_every_connection_of_a_domain(
        connect) -> None:
    guests = [connect(GUEST) for _ in range(5)]
    replies = [guests[index % 5].call(Op.TRANSACTION_START, b"\x00")
               for index in range(15)]
    assert sum(not r.startswith(b"E") for r in replies) == 11
    assert replies[11:] == [b"ENOSPC"] * 4


def test_node_quota_counts_every_connection_of_a_domain() -> None:
    with XenStoreServer(quotas=Quotas(nodes=10)) as server:
        dom0 = RawClient(server.socketpair())
        _home(dom0)
        guests = [RawClient(server.socketpair(GUEST)) for _ in range(3)]
        replies = [guests[index % 3].call(Op.WRITE, b"n%d\x00v" % index)
                   for index in range(12)]
        # the home node is the guest's too: 1 + 9 written
        assert replies[:9] == [b"OK\x00"] * 9
        assert replies[9:] == [b"ENOSPC"] * 3
        for client in guests + [dom0]:
            client.close()


def _stuff(guest: RawClient, count: int, payload: bytes) -> None:
    """Pipelines ``count`` requests without reading a reply."""
    frame = HEADER.pack(Op.READ, 1, 0, len(payload)) + payload
    guest.sock.sendall(frame * count)


def test_a_domain_at_its_outstanding_quota_is_not_read(dom0,
                                                       connect) -> None:
    """C xenstored's rule: a domain with 20 unsent replies is not read
    until it takes some; other domains go on meanwhile."""
    _home(dom0)
    big = b"x" * 2000
    assert dom0.call(Op.WRITE, b"/local/domain/5/big\x00" + big) == b"OK\x00"
    stuck = connect(GUEST)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _stuff(stuck, 2000, b"big\x00")  # ~4 MB of replies, never read
    other = connect(GUEST)
    other.timeout = 0.3
    rq_id = other.send(Op.READ, b"big\x00")
    with pytest.raises(TimeoutError):
        other.reply(rq_id)  # the domain is at its quota
    assert connect(6).call(Op.GET_DOMAIN_PATH, b"6\x00") \
        == b"/local/domain/6\x00"
    assert dom0.call(Op.READ, b"/local/domain/5/big\x00") == big
    # the stuck connection takes its replies: the domain goes on
    other.timeout = 30
    stuck.timeout = 30
    for _ in range(2000):
        assert stuck.reply(1).payload == big
    assert other.reply(rq_id).payload == big


def test_outstanding_quota_bounds_the_daemons_queue(server, dom0,
                                                    connect) -> None:
    _home(dom0)
    dom0.call(Op.WRITE, b"/local/domain/5/big\x00" + b"x" * 2000)
    guests = [connect(GUEST) for _ in range(10)]
    for guest in guests:
        guest.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        _stuff(guest, 1000, b"big\x00")
    for _ in range(3):
        dom0.sync()
    sessions = [s for s in server.core.sessions if s.domid == GUEST]
    assert sum(s.outbox.replies for s in sessions) <= 20
    assert sessions[0].usage.outstanding <= 20


def _rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_unread_replies_of_40_connections_do_not_grow_the_daemon() -> None:
    """40 connections of one guest send 64 KiB of READs of a 2,000-byte
    value each and never read: the daemon (a separate process, measured
    through /proc) grows by less than 32 MiB. Without backpressure it grew
    from 16 MiB to 313 MiB here."""
    with XenStoreDaemon("embedded", domains=[GUEST]) as daemon:
        dom0 = RawClient(daemon.socket_path)
        _home(dom0)
        dom0.call(Op.WRITE, b"/local/domain/5/v\x00" + b"x" * 2000)
        before = _rss_kib(daemon.pid)
        guests: List[RawClient] = []
        for _ in range(40):
            guest = RawClient(daemon.domain_socket(GUEST))
            guest.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            guests.append(guest)
        payload = b"v\x00"
        count = 65536 // (HEADER.size + len(payload))
        senders = [threading.Thread(target=_stuff, args=(g, count, payload))
                   for g in guests]
        for sender in senders:
            sender.start()
        peak = before
        for _ in range(20):  # rounds of the daemon's loop
            dom0.sync()
            peak = max(peak, _rss_kib(daemon.pid))
        for sender in senders:
            sender.join(1)  # blocked senders: the daemon stopped reading
        dom0.sync()
        peak = max(peak, _rss_kib(daemon.pid))
        assert peak - before < 32 * 1024, (before, peak)
        for guest in guests:
            guest.close()
        for sender in senders:
            sender.join(10)
        # a new connection of the guest works once the others are gone
        assert RawClient(daemon.domain_socket(GUEST)).call(
            Op.READ, b"v\x00") == b"x" * 2000
        dom0.close()


def test_oversized_header_closes_that_connection_only(dom0, connect) -> None:
    guest = connect(GUEST)
    bystander = connect(GUEST)
    guest.sock.sendall(HEADER.pack(Op.READ, 1, 0, 4097))
    with pytest.raises(EOFError):
        guest.reply(1)
    assert bystander.call(Op.GET_DOMAIN_PATH, b"5\x00") \
        == b"/local/domain/5\x00"
    assert dom0.call(Op.READ, b"/tool\x00") == b""


def test_a_failing_request_closes_that_connection_only(server, dom0,
                                                       connect,
                                                       monkeypatch) -> None:
    guest = connect(GUEST)
    real = server.core.handle

    def broken(session, packet):
        if packet.payload == b"boom\x00":
            raise RuntimeError("a bug in a handler")
        real(session, packet)

    monkeypatch.setattr(server.core, "handle", broken)
    guest.send(Op.READ, b"boom\x00")
    with pytest.raises(EOFError):
        guest.reply(1)
    assert dom0.call(Op.GET_DOMAIN_PATH, b"0\x00") == b"/local/domain/0\x00"
    assert server._thread is not None and server._thread.is_alive()


_PATHS = st.sampled_from([b"a", b"a/b", b"/local/domain/5/x", b"/tool", b"@x",
                          b"@releaseDomain", b"", b"/", b"//", b"a" * 3000])
_FIELD = st.one_of(_PATHS, st.binary(max_size=64),
                   st.sampled_from([b"T", b"F", b"0", b"4294967295", b"-1",
                                    b"n5", b"b0", b"x"]))
_PAYLOAD = st.lists(_FIELD, max_size=4).map(b"\x00".join).flatmap(
    lambda body: st.sampled_from([body, body + b"\x00"]))


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    op = draw(st.one_of(st.integers(0, 30), st.integers(0, 2 ** 32 - 1)))
    tx_id = draw(st.sampled_from([0, 0, 1, 2, 2 ** 32 - 1]))
    payload = draw(_PAYLOAD)[:4096]
    frame = HEADER.pack(op, draw(st.integers(0, 2 ** 32 - 1)), tx_id,
                        len(payload)) + payload
    if draw(st.integers(0, 20)) == 0:  # a lying length
        frame = HEADER.pack(op, 1, tx_id, draw(st.integers(0, 2 ** 32 - 1))) \
            + payload
    return frame


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_frames(), min_size=1, max_size=12), st.booleans())
def test_random_guest_input_never_takes_the_daemon_down(
        server, frames, as_dom0) -> None:
    dom0 = RawClient(server.socketpair(0))
    try:
        hostile = RawClient(server.socketpair(0 if as_dom0 else GUEST))
        try:
            hostile.sock.sendall(b"".join(frames))
        except OSError:
            pass  # the daemon already closed it
        hostile.close()
        assert dom0.call(Op.GET_DOMAIN_PATH, b"0\x00") \
            == b"/local/domain/0\x00"
        assert server._thread is not None and server._thread.is_alive()
    finally:
        dom0.close()


def test_unread_events_are_bounded_per_domain(server, dom0, connect) -> None:
    _home(dom0)
    watchers = []
    for index in range(8):
        watcher = connect(GUEST)
        watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert watcher.call(Op.WATCH, b"ev\x00t%d\x00" % index) \
            == b"OK\x00"
        watchers.append(watcher)
    long_name = b"k" * 200
    for index in range(6000):
        dom0.send(Op.WRITE, b"/local/domain/5/ev/%s%d\x00v"
                  % (long_name, index))
    dom0.sync()
    sessions = [s for s in server.core.sessions if s.domid == GUEST]
    assert sum(s.outbox.event_bytes for s in sessions) <= 1 << 20
    assert sessions[0].usage.event_bytes <= 1 << 20
    assert sum(s.outbox.dropped for s in sessions) > 0


def test_out_of_descriptors_the_daemon_stops_accepting_without_spinning(
        tmp_path) -> None:
    import resource
    import subprocess
    import sys

    sock_path = str(tmp_path / "sock")
    log_path = str(tmp_path / "log")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyxs.server", "--socket", sock_path],
            stdout=log, stderr=log, preexec_fn=low_limit,
            env=_env_with_pyxs())
    clients: List[RawClient] = []
    try:
        while True:  # wait for the socket
            try:
                clients.append(RawClient(sock_path))
                break
            except OSError:
                assert process.poll() is None
        for _ in range(60):  # more than 40 descriptors' worth
            clients.append(RawClient(sock_path, timeout=0.2))
        for client in clients:
            client.send(Op.GET_DOMAIN_PATH, b"1\x00")
        served = _answered(clients, within=2.0)
        assert 5 < len(served) < len(clients), len(served)
        for client in clients[:30]:
            client.close()
        late = clients[-1]
        late.timeout = 10
        assert late.call(Op.GET_DOMAIN_PATH, b"2\x00") \
            == b"/local/domain/2\x00"
        assert process.poll() is None
    finally:
        for client in clients:
            client.close()
        process.terminate()
        process.wait(10)
    with open(log_path) as log:
        failures = log.read().count("accept failed")
    assert 1 <= failures <= 5  # not once per loop round


def _answered(clients: List[RawClient], within: float) -> List[RawClient]:
    """The clients that got a reply within ``within`` seconds in all."""
    import select
    import time

    waiting = {client.sock: client for client in clients}
    answered = []
    deadline = time.monotonic() + within
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(waiting), [], [], left)
        for sock in ready:
            if sock.recv(4096):
                answered.append(waiting.pop(sock))
            else:
                del waiting[sock]
    return answered


def _env_with_pyxs():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    return env


def test_a_domain_holds_at_most_64_connections(dom0, connect) -> None:
    guests = [connect(GUEST) for _ in range(64)]
    for guest in guests:
        assert guest.call(Op.GET_DOMAIN_PATH, b"5\x00") \
            == b"/local/domain/5\x00"
    extra = connect(GUEST)
    with pytest.raises((EOFError, ConnectionError)):
        extra.call(Op.GET_DOMAIN_PATH, b"5\x00")
    assert connect(6).call(Op.GET_DOMAIN_PATH, b"6\x00") \
        == b"/local/domain/6\x00"
    assert dom0.call(Op.GET_DOMAIN_PATH, b"0\x00") == b"/local/domain/0\x00"
    guests[0].close()
    guests[1].sync()  # the close is seen
    assert connect(GUEST).call(Op.GET_DOMAIN_PATH, b"5\x00") \
        == b"/local/domain/5\x00"
