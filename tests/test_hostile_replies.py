"""Replies of the wrong shape, in correct frames: each call that gets one
raises UnexpectedPacket naming its operation, never a raw ValueError or a
made-up value, and the connection keeps working.

No real daemon sends these, so a scripted fake one does (tests/fakedaemon.py).
"""

import errno
import threading

import pytest
from aiosync import SyncAio
from fakedaemon import FakeConnection, FakeDaemon, honest

from pyxs import Client
from pyxs._internal import NUL, Op, Packet
from pyxs._replies import LIST_PARTS_MAX
from pyxs.exceptions import PyXSError, TimeoutError, UnexpectedPacket

# Short enough that today's endless loops end as a failed assertion rather
# than a hung suite; no passing test waits for it.
TIMEOUT = 5


class Scripted:
    """A handler answering ``op`` with the payloads queued in ``replies``
    (in order, the last one repeated) and everything else honestly."""

    def __init__(self, op: int, *replies: bytes) -> None:
        self.op = op
        self.replies = list(replies)
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, conn: FakeConnection, request: Packet) -> None:
        if request.op != self.op:
            honest(conn, request)
            return
        with self.lock:
            self.count += 1
            payload = self.replies[0] if len(self.replies) == 1 else \
                self.replies.pop(0)
        conn.reply(request, payload)


def connected(handler, kind="threaded"):
    """A fake daemon, and a client of ``kind`` for it: ``threaded``
    (pyxs.Client) or ``aio`` (pyxs.aio.Client, driven synchronously):
    both must refuse the same replies."""
    fake = FakeDaemon(handler)
    if kind == "aio":
        return fake, SyncAio(unix_socket_path=fake.socket_path,
                             timeout=TIMEOUT)
    return fake, Client(unix_socket_path=fake.socket_path, timeout=TIMEOUT)


both = pytest.mark.parametrize("kind", ["threaded", "aio"])


def refused(call, op_name, *args):
    with pytest.raises(UnexpectedPacket) as info:
        call(*args)
    text = str(info.value)
    assert op_name in text and len(text) < 250, text
    assert info.value.op == op_name
    return info.value


@pytest.mark.parametrize("payload", [
    b"abc\x00", b"99999999999\x00", b"4294967296\x00", b"0\x00", b"00\x00",
    b"", b"\x00", b"5", b"5\x00\x00", b"-1\x00", b" 5\x00", b"5 \x00",
    b"+5\x00", b"\xd9\xa5\x00", b"1e3\x00", b"5\x00junk",
])
def test_transaction_id_replies_are_checked(payload):
    fake, c = connected(Scripted(Op.TRANSACTION_START, payload))
    with fake, c:
        refused(c.transaction, "TRANSACTION_START")
        assert c.tx_id == 0
        c.write(b"/after", b"outside any transaction")
        assert fake.connections[0].received[-1].tx_id == 0


@pytest.mark.parametrize("payload, expected", [
    (b"1\x00", 1), (b"4294967295\x00", 2 ** 32 - 1), (b"42\x00", 42),
])
def test_valid_transaction_ids(payload, expected):
    fake, c = connected(Scripted(Op.TRANSACTION_START, payload))
    with fake, c:
        assert c.transaction() == expected
        c.write(b"/in", b"tx")  # the id fits the header: no struct.error
        assert fake.connections[0].received[-1].tx_id == expected
        assert c.commit()


@pytest.mark.parametrize("payload", [
    b"\xff\xfe", b"", b"\x00", b"not a path\x00", b"/local/do\x00main\x00",
    b"/local/domain/3", b"local/domain/3\x00", b"/local//domain\x00",
    b"/local/domain/3/\x00", b"/" + b"a" * 3072 + b"\x00",
])
@both
def test_domain_path_replies_are_checked(payload, kind):
    fake, c = connected(Scripted(Op.GET_DOMAIN_PATH, payload), kind)
    with fake, c:
        refused(c.get_domain_path, "GET_DOMAIN_PATH", 3)
        assert c.read(b"/still") == b"value"


@both
def test_valid_domain_path(kind):
    fake, c = connected(Scripted(Op.GET_DOMAIN_PATH, b"/local/domain/3\x00"),
                        kind)
    with fake, c:
        assert c.get_domain_path(3) == b"/local/domain/3"


@pytest.mark.parametrize("payload", [
    b"X\x00", b"", b"T", b"F", b"TT\x00", b"true\x00", b"T\x00\x00", b"t\x00",
])
@both
def test_boolean_replies_are_checked(payload, kind):
    fake, c = connected(Scripted(Op.IS_DOMAIN_INTRODUCED, payload), kind)
    with fake, c:
        refused(c.is_domain_introduced, "IS_DOMAIN_INTRODUCED", 3)


@both
def test_valid_booleans(kind):
    fake, c = connected(Scripted(Op.IS_DOMAIN_INTRODUCED, b"T\x00",
                                 b"F\x00"), kind)
    with fake, c:
        assert c.is_domain_introduced(1) is True
        assert c.is_domain_introduced(1) is False


@pytest.mark.parametrize("payload", [b"NO\x00", b"OK", b"", b"OK\x00\x00",
                                     b"ok\x00", b"OKAY\x00"])
@both
def test_ok_replies_are_checked(payload, kind):
    fake, c = connected(Scripted(Op.MKDIR, payload), kind)
    with fake, c:
        exc = refused(c.mkdir, "MKDIR", b"/m")
        assert exc.path == b"/m"
        assert c.read(b"/still") == b"value"


@pytest.mark.parametrize("payload", [
    b"a\x00\x00b\x00", b"a/b\x00", b"a", b"a\x00b", b"\x00", b"a b\x00",
    b"\xff\x00",
])
@both
def test_listing_replies_are_checked(payload, kind):
    fake, c = connected(Scripted(Op.DIRECTORY, payload), kind)
    with fake, c:
        refused(c.list, "DIRECTORY", b"/d")
        assert c.read(b"/still") == b"value"


@pytest.mark.parametrize("payload", [b"", b"x0\x00", b"r5", b"r\x00",
                                     b"r5\x00\x00", b"r5\x00b"])
@both
def test_permission_replies_are_checked(payload, kind):
    fake, c = connected(Scripted(Op.GET_PERMS, payload), kind)
    with fake, c:
        refused(c.get_perms, "GET_PERMS", b"/p")


@both
def test_error_reply_names_are_kept_and_messages_capped(kind):
    name = b"E" + b"X" * 3999
    fake, c = connected(erroring(Scripted(Op.READ, b"ENOENT\x00",
                                          b"EQUOTA\x00", name + b"\x00",
                                          b"EACCES")), kind)
    with fake, c:
        for expected in (errno.ENOENT, "EQUOTA", name.decode(),
                         errno.EACCES):
            with pytest.raises(PyXSError) as info:
                c.read(b"/r")
            assert not isinstance(info.value, UnexpectedPacket)
            assert info.value.args[0] == expected
            assert len(info.value.args) == 2
            text = str(info.value)
            assert "READ" in text and "/r" in text and len(text) < 250, text


@pytest.mark.parametrize("payload", [b"\xff" * 4000, b"", b"\x00",
                                     b"oops\x00", b"enoent\x00",
                                     b"ENOENT\x00junk", b"E\x00"])
@both
def test_malformed_error_replies(payload, kind):
    fake, c = connected(erroring(Scripted(Op.READ, payload)), kind)
    with fake, c:
        refused(c.read, "READ", b"/r")
        c.mkdir(b"/still/usable")


def erroring(scripted):
    """Sends the scripted payloads as ERROR replies."""
    def handler(conn, request):
        if request.op != scripted.op:
            honest(conn, request)
            return
        replies = scripted.replies
        payload = replies[0] if len(replies) == 1 else replies.pop(0)
        conn.reply(request, payload, op=Op.ERROR)
    return handler


# -- DIRECTORY_PART ---------------------------------------------------------

# A client that loops is stopped here (the daemon stops answering), so a
# regression fails with TimeoutError instead of hanging the suite.
PARTS_ANSWERED = 5 * LIST_PARTS_MAX


def parts_daemon(part):
    """DIRECTORY gives E2BIG; DIRECTORY_PART ``part(offset, count)``."""
    state = {"count": 0}

    def handler(conn, request):
        if request.op == Op.DIRECTORY:
            conn.reply(request, b"E2BIG\x00", op=Op.ERROR)
        elif request.op == Op.DIRECTORY_PART:
            state["count"] += 1
            offset = int(request.payload.split(NUL)[1])
            payload = part(offset, state["count"])
            if payload is not None and state["count"] <= PARTS_ANSWERED:
                conn.reply(request, payload)  # else never answer
        else:
            honest(conn, request)
    return handler, state


@both
def test_parts_without_end_marker_fail_after_a_bound(kind):
    # The same generation and a name every time, never the empty name:
    # the client used to ask for ever (150,000 requests in 12 s).
    def part(offset, count):
        return b"7\x00name%d\x00" % count

    handler, state = parts_daemon(part)
    fake, c = connected(handler, kind)
    with fake, c:
        exc = refused(c.list, "DIRECTORY_PART", b"/huge")
        assert "end marker" in str(exc) and exc.path == b"/huge"
        assert state["count"] == LIST_PARTS_MAX
        assert c.read(b"/still") == b"value"


@pytest.mark.parametrize("payload", [
    b"5",              # cut short: no NUL after the generation
    b"5\x00",          # no name and no end marker: no progress
    b"5\x00a",         # a name cut short
    b"5\x00a\x00b",    # the last name cut short
    b"x\x00a\x00\x00",  # generation not decimal
    b"\x00a\x00\x00",  # no generation
    b"1" * 21 + b"\x00a\x00\x00",  # more than a uint64
    b"5\x00a\x00\x00\x00",  # two end markers
    b"5\x00a/b\x00\x00",    # not a child name
    b"",
])
@both
def test_cut_or_malformed_part_never_gives_a_truncated_listing(payload, kind):
    def part(offset, count):
        return b"5\x00first\x00second\x00" if offset == 0 else payload

    handler, _ = parts_daemon(part)
    fake, c = connected(handler, kind)
    with fake, c:
        refused(c.list, "DIRECTORY_PART", b"/d")
        assert c.read(b"/still") == b"value"


@both
def test_honest_parts_give_the_whole_listing(kind):
    names = [b"n%03d" % i for i in range(30)]
    blob = b"".join(n + NUL for n in names)

    def part(offset, count):
        chunk = blob[offset:offset + 50]
        chunk = chunk[:chunk.rfind(NUL) + 1]  # whole names only
        last = offset + len(chunk) >= len(blob)
        return b"9\x00" + chunk + (NUL if last else b"")

    handler, state = parts_daemon(part)
    fake, c = connected(handler, kind)
    with fake, c:
        assert c.list(b"/d") == names
        assert state["count"] == 3  # 10 names of 5 bytes per 50-byte part


@both
def test_changing_generation_restarts_a_bounded_number_of_times(kind):
    def part(offset, count):
        return b"%d\x00a\x00" % count  # a new generation every part

    handler, state = parts_daemon(part)
    fake, c = connected(handler, kind)
    with fake, c:
        with pytest.raises(PyXSError) as info:
            c.list(b"/d")
        assert info.value.args[0] == errno.EAGAIN
        assert state["count"] <= 2 * 16


def test_a_part_that_never_comes_times_out():
    handler, _ = parts_daemon(lambda offset, count: None)
    fake = FakeDaemon(handler)
    with fake, Client(unix_socket_path=fake.socket_path, timeout=0.2) as c:
        with pytest.raises(TimeoutError):
            c.list(b"/d")


@both
def test_walk_checks_listings_too(kind):
    fake, c = connected(Scripted(Op.DIRECTORY, b"a\x00\x00b\x00"), kind)
    with fake, c:
        exc = refused(lambda: list(c.walk(b"/top")), "DIRECTORY")
        assert exc.path == b"/top"
        assert c.read(b"/still") == b"value"


def test_watch_reply_other_than_ok_is_refused():
    fake, c = connected(Scripted(Op.WATCH, b"KO\x00"))
    with fake, c:
        m = c.monitor()
        refused(m.watch, "WATCH", b"/w", b"tok")
        assert m.watched == set()
