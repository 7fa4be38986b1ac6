"""Who reads the connection: a waiting caller (leader/follower), or the
router thread while watches exist; and what an interrupt does to either."""

import threading
from typing import Any, List

import pytest
from fakedaemon import FakeDaemon, honest
from xsassert import BOUND, SendLog, ctrl_c_once

from pyxs import Client
from pyxs._internal import Op, Packet
from pyxs.connection import UnixSocketConnection
from pyxs.exceptions import ConnectionError, InvalidPayload, TimeoutError
from pyxs.router import Router


def record_readers(monkeypatch: Any) -> List[str]:
    """Names of the threads that read the connection, one per read."""
    readers: List[str] = []
    real_fill = UnixSocketConnection.fill

    def fill(self: UnixSocketConnection) -> None:
        readers.append(threading.current_thread().name)
        real_fill(self)

    monkeypatch.setattr(UnixSocketConnection, "fill", fill)
    return readers


def test_without_watches_the_caller_reads_its_own_reply(client, monkeypatch):
    readers = record_readers(monkeypatch)
    client.write(b"/own", b"v")
    assert client.read(b"/own") == b"v"
    assert readers and set(readers) == {threading.current_thread().name}


def test_calls_and_events_share_the_reading_role(client):
    with client.monitor() as m:
        m.watch(b"/ev", b"t")
        assert m.get(BOUND) == (b"/ev", b"t")
        # Callers and the router thread take turns reading (which one
        # reads a reply depends on timing): every reply reaches its caller
        # and every event its monitor.
        for i in range(100):
            client.write(b"/ev/k", b"%d" % i)
            assert client.read(b"/ev/k") == b"%d" % i
        for _ in range(100):
            assert m.get(BOUND) == (b"/ev/k", b"t")
        # Callers do not pile up in the queue of waiting followers.
        assert client.router.stats()["followers"] == 0


def test_events_arrive_while_nobody_calls(client, monkeypatch):
    with client.monitor() as m, Client(
            unix_socket_path=client.router.connection.path,
            timeout=BOUND) as other:
        m.watch(b"/quiet", b"q")
        assert m.get(BOUND) == (b"/quiet", b"q")
        readers = record_readers(monkeypatch)
        other.write(b"/quiet/x", b"1")  # another connection
        # No call on the monitor's connection: the thread read the event.
        assert m.get(BOUND) == (b"/quiet/x", b"q")
        assert "pyxs-router" in readers


class Held:
    """A fake daemon that answers /slow never, /held only once /release
    arrives on any connection, and everything else at once."""

    def __init__(self) -> None:
        self.received = {b"/slow": threading.Event(),
                         b"/held": threading.Event()}
        self.held: List[Any] = []

    def __call__(self, conn: Any, request: Any) -> None:
        path = request.payload.rstrip(b"\0")
        if request.op == Op.READ and path in self.received:
            if path == b"/held":
                self.held.append((conn, request))
            self.received[path].set()
            return
        if request.op == Op.READ and path == b"/release":
            for held_conn, held_request in self.held:
                held_conn.reply(held_request, b"released")
        honest(conn, request)


def in_thread(target: Any) -> Any:
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # inspected by the test
            outcome.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_leading(monkeypatch: Any, router: Router) -> threading.Event:
    """An event set once some caller (not the router thread) reads."""
    leading = threading.Event()
    real = Router._read_once

    def read_once(self: Router, *args: Any) -> None:
        if threading.current_thread() is not self.thread:
            leading.set()
        real(self, *args)

    monkeypatch.setattr(Router, "_read_once", read_once)
    return leading


def test_a_reply_read_by_another_caller_completes_its_waiter(monkeypatch):
    script = Held()
    with FakeDaemon(script) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        leading = wait_until_leading(monkeypatch, c.router)
        readers = record_readers(monkeypatch)
        slow, slow_outcome = in_thread(lambda: c.read(b"/slow"))
        assert leading.wait(BOUND)
        # The slow caller holds the reading role: this caller follows, and
        # its reply is read for it.
        assert c.read(b"/a") == b"value"
        assert threading.current_thread().name not in readers
        assert slow.is_alive()
        c.close()
        slow.join(BOUND)
        assert isinstance(slow_outcome[0], ConnectionError)


@pytest.mark.parametrize("timeout", [BOUND, None])
def test_a_waiting_caller_takes_over_when_the_reader_leaves(monkeypatch,
                                                            timeout):
    # Without a timeout a follower waits straight in Router.call(), with
    # one in _await(): either way it must be handed the role.
    script = Held()
    with FakeDaemon(script) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=timeout) as c:
        leading = wait_until_leading(monkeypatch, c.router)
        slow, slow_outcome = in_thread(
            lambda: c.router.submit(Op.READ, 0, b"/slow\0").get(0.3))
        assert leading.wait(BOUND)
        held, held_outcome = in_thread(lambda: c.read(b"/held"))
        assert script.received[b"/held"].wait(BOUND)
        slow.join(BOUND)
        assert isinstance(slow_outcome[0], TimeoutError)
        # The reader gave up; the /held caller must now read for itself.
        with Client(unix_socket_path=fake.socket_path,
                    timeout=BOUND) as other:
            assert other.read(b"/release") == b"value"
        held.join(BOUND)
        assert held_outcome == [b"released"]
        assert c.read(b"/b") == b"value"


# -- interrupts --------------------------------------------------------------

def test_interrupted_follower_leaves_the_queue(monkeypatch):
    # Ctrl-C while this caller waits behind another reader: it leaves the
    # queue, so the role is never handed to a caller that is gone.
    script = Held()
    with FakeDaemon(script) as fake, \
            Client(unix_socket_path=fake.socket_path) as c:
        leading = wait_until_leading(monkeypatch, c.router)
        held, held_outcome = in_thread(lambda: c.read(b"/held"))
        assert leading.wait(BOUND)

        # Interrupt once the /slow request is written whole and the write
        # accounted for: the connection then stays (an interrupt inside
        # the write closes it, see test_hygiene), and the interrupt lands
        # while this caller waits behind the reader.
        written = threading.Event()
        connection = c.router.connection
        real_send = connection.send_bytes

        def send_bytes(data: bytes, *deadline: float) -> None:
            real_send(data, *deadline)
            if b"/slow" in data:
                written.set()

        monkeypatch.setattr(connection, "send_bytes", send_bytes)
        with ctrl_c_once(written), pytest.raises(KeyboardInterrupt):
            c.read(b"/slow")  # never answered
        assert c.router.stats()["followers"] == 0
        with Client(unix_socket_path=fake.socket_path,
                    timeout=BOUND) as other:
            assert other.read(b"/release") == b"value"
        held.join(BOUND)
        assert held_outcome == [b"released"]
        # The role is free again: a new caller reads for itself.
        assert Client(router=c.router, timeout=BOUND).read(b"/b") == \
            b"value"


def test_interrupt_inside_the_read_keeps_the_connection(monkeypatch):
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        real_reader = UnixSocketConnection._reader

        def interrupted(self: UnixSocketConnection) -> Any:
            def read(size: int) -> bytes:
                raise KeyboardInterrupt  # as Ctrl-C does, before any byte
            return read

        monkeypatch.setattr(UnixSocketConnection, "_reader", interrupted)
        with pytest.raises(KeyboardInterrupt):
            c.read(b"/a")
        monkeypatch.setattr(UnixSocketConnection, "_reader", real_reader)
        assert c.read(b"/b") == b"value"
        # The abandoned reply was dropped.
        assert c.router.stats()["in_flight"] == 0


def test_interrupt_after_the_read_loses_no_byte(monkeypatch):
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        real_fill = UnixSocketConnection.fill

        def fill_then_interrupt(self: UnixSocketConnection) -> None:
            real_fill(self)
            raise KeyboardInterrupt  # the bytes are stored already

        monkeypatch.setattr(UnixSocketConnection, "fill",
                            fill_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            c.read(b"/a")
        monkeypatch.undo()
        assert c.router.connection.has_unparsed
        # The next reader handles the stored reply first, then its own.
        assert c.read(b"/b") == b"value"
        assert c.router.stats()["in_flight"] == 0


def test_interrupt_while_handling_replies_closes_the_connection(
        monkeypatch):
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        def interrupted(self: Router, packet: Any) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(Router, "_dispatch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            c.read(b"/a")
        monkeypatch.undo()
        with pytest.raises(ConnectionError, match="interrupted while "
                           "handling replies"):
            c.read(b"/b")
        c.router.thread.join(BOUND)
        assert not c.router.thread.is_alive()


def test_daemon_hanging_up_on_an_idle_client_ends_the_router():
    with FakeDaemon(honest) as fake:
        c = Client(unix_socket_path=fake.socket_path, timeout=BOUND)
        c.connect()
        assert c.read(b"/a") == b"value"
        fake.connections[0].close()
        # Nobody calls: the router thread notices the hang-up by itself.
        c.router.thread.join(BOUND)
        assert not c.router.thread.is_alive()
        assert not c.router.is_connected
        with pytest.raises(ConnectionError, match="closed"):
            c.read(b"/a")
        c.close()


# -- write combining ---------------------------------------------------------

class HeldWrites:
    """Holds the first write until released; counts packets per write."""

    def __init__(self, client: Client, monkeypatch: Any,
                 then: Any = None) -> None:
        self.packets_per_write: List[int] = []
        self.writing = threading.Event()
        self.release = threading.Event()
        self.waiting = threading.Semaphore(0)
        connection = client.router.connection
        real_send = connection.send_bytes
        real_await = Router._await

        def send_bytes(data: bytes, *deadline: float) -> None:
            self.packets_per_write.append(_count_packets(data))
            if len(self.packets_per_write) == 1:
                self.writing.set()
                assert self.release.wait(BOUND)
            real_send(data, *deadline)
            if then is not None and len(self.packets_per_write) == 1:
                then()

        def await_(router: Router, *args: Any) -> None:
            self.waiting.release()  # this caller's request is queued
            real_await(router, *args)

        monkeypatch.setattr(connection, "send_bytes", send_bytes)
        monkeypatch.setattr(Router, "_await", await_)

    def queue_reads(self, client: Client, path: bytes, behind: int) -> Any:
        """Starts one read, held in its write, then ``behind`` more reads
        queued behind it; returns ``(first, others)``, each a thread and
        its outcome (see :func:`in_thread`)."""
        first = in_thread(lambda: client.read(path))
        assert self.writing.wait(BOUND)
        others = [in_thread(lambda: client.read(path))
                  for _ in range(behind)]
        for _ in others:
            assert self.waiting.acquire(timeout=BOUND)
        return first, others


def _count_packets(data: bytes) -> int:
    from pyxs._internal import HEADER
    count = offset = 0
    while offset < len(data):
        offset += HEADER.size + HEADER.unpack_from(data, offset)[3]
        count += 1
    return count


def test_requests_queued_during_a_write_share_the_next_one(client,
                                                           monkeypatch):
    client.write(b"/wc", b"v")
    held = HeldWrites(client, monkeypatch)
    first, others = held.queue_reads(client, b"/wc", behind=4)
    held.release.set()
    for thread, outcome in [first] + others:
        thread.join(BOUND)
        assert outcome == [b"v"]
    assert held.packets_per_write == [1, 4]


def test_interrupted_writer_with_others_queued_closes_cleanly(client,
                                                              monkeypatch):
    def interrupt() -> None:
        raise KeyboardInterrupt  # Ctrl-C once the first write is out

    held = HeldWrites(client, monkeypatch, then=interrupt)
    (first, first_outcome), others = held.queue_reads(client, b"/x",
                                                      behind=3)
    held.release.set()
    first.join(BOUND)
    assert isinstance(first_outcome[0], KeyboardInterrupt)
    # Their requests were never written: they fail instead of hanging.
    for thread, outcome in others:
        thread.join(BOUND)
        assert isinstance(outcome[0], ConnectionError)
        assert "interrupted" in str(outcome[0])


def _wakeups(thread: threading.Thread) -> int:
    """How often ``thread`` went to sleep and was woken (the kernel's
    count of its voluntary context switches)."""
    with open("/proc/self/task/%d/status" % thread.native_id) as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches for the thread")


def test_thread_sleeps_while_a_caller_waits_long_with_watches():
    script = Held()
    with FakeDaemon(script) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c, \
            c.monitor() as m:
        m.watch(b"/w", b"t")
        assert m.get(BOUND) == (b"/w", b"t")
        before = _wakeups(c.router.thread)
        with pytest.raises(TimeoutError):
            c.router.submit(Op.READ, 0, b"/slow\0").get(0.5)
        # While the caller read (and would have delivered events), the
        # thread did not look every 2 ms: that would be about 250 times.
        assert _wakeups(c.router.thread) - before < 25
        # Once the caller let go, the thread reads for the monitor again.
        fake.connections[0].reply(
            Packet(Op.WATCH_EVENT, b"/w/x\0t\0"), b"/w/x\0t\0",
            op=Op.WATCH_EVENT, rq_id=0, tx_id=0)
        assert m.get(BOUND) == (b"/w/x", b"t")


def test_submit_many_sends_one_write_and_keeps_the_order(client):
    client.write(b"/many/a", b"A")
    client.write(b"/many/b", b"B")
    router = client.router
    sent = SendLog(client)
    writes = []
    real = router.connection.send_bytes
    router.connection.send_bytes = lambda data: (writes.append(data),
                                                 real(data))[1]
    assert router.submit_many([]) == [] and writes == []
    rvars = router.submit_many([(Op.READ, 0, b"/many/a\x00"),
                                (Op.DIRECTORY, 0, b"/many\x00"),
                                (Op.READ, 0, b"/many/b\x00")])
    replies = [rvar.get(BOUND) for rvar in rvars]
    assert len(writes) == 1 and sent.ops == [Op.READ, Op.DIRECTORY, Op.READ]
    assert [r.payload for r in replies] == [b"A", b"a\x00b\x00", b"B"]
    assert len({rvar.rq_id for rvar in rvars}) == 3


def test_submit_many_refuses_all_when_one_is_too_long(client):
    with pytest.raises(InvalidPayload):
        client.router.submit_many([(Op.READ, 0, b"/ok\x00"),
                                   (Op.WRITE, 0, b"x" * 5000)])
    client.write(b"/after", b"v")  # nothing half-sent: still usable
    assert client.read(b"/after") == b"v"
