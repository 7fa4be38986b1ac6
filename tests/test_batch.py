"""Client.read_many(), write_many() and pipeline() against real daemons."""

import errno
import threading

import pytest
from conftest import expect
from xsassert import BOUND, SendLog, stopped

from pyxs import _batch
from pyxs._internal import Op
from pyxs.exceptions import (
    InvalidPath,
    InvalidPayload,
    PyXSError,
    TimeoutError,
)


class Writes:
    """Counts the writes (system calls) of a client's connection."""

    def __init__(self, client):
        self.count = 0
        connection = client.router.connection
        real = connection.send_bytes

        def send_bytes(data, *args):
            self.count += 1
            real(data, *args)
        connection.send_bytes = send_bytes


def keep_rvars(client):
    """Records the RVars of every submit_many() of ``client``'s router."""
    kept = []
    router = client.router
    real = router.submit_many

    def submit_many(requests):
        rvars = real(requests)
        kept.extend(rvars)
        return rvars
    router.submit_many = submit_many
    return kept


# -- order and one write ---------------------------------------------------

def test_write_many_then_read_many_in_order_in_one_write_each(client):
    paths = [b"/batch/k%03d" % i for i in range(200)]
    writes = Writes(client)
    sent = SendLog(client)
    client.write_many([(p, b"v%d" % i) for i, p in enumerate(paths)])
    assert writes.count == 1 and sent.ops == [Op.WRITE] * 200
    assert [payload.split(b"\0")[0] for _, payload in sent.requests] == paths
    assert client.read_many(reversed(paths)) == \
        [b"v%d" % i for i in reversed(range(200))]
    assert writes.count == 2 and len(sent.ops) == 400
    assert client.read(paths[57]) == b"v57"


def test_write_many_takes_a_mapping_and_str(client):
    assert client.write_many({"/m/a": "A", b"/m/b": b"B"}) is None
    assert client.read_many(["/m/a", b"/m/b"]) == [b"A", b"B"]


def test_later_write_of_the_same_path_wins(client):
    client.write_many([(b"/same", b"first"), (b"/same", b"second"),
                       (b"/other", b"x"), (b"/same", b"third")])
    assert client.read(b"/same") == b"third"
    assert client.read_many([b"/same", b"/same"]) == [b"third", b"third"]


def test_empty_batches_send_nothing(client):
    sent = SendLog(client)
    assert client.read_many([]) == []
    client.write_many({})
    client.write_many(iter(()))
    assert sent.ops == []


def test_batches_longer_than_a_window(client):
    count = 2 * _batch.WINDOW + 10
    writes = Writes(client)
    client.write_many((b"/w/k%d" % i, b"%d" % i) for i in range(count))
    assert writes.count == 3
    values = client.read_many(b"/w/k%d" % i for i in range(count))
    assert values == [b"%d" % i for i in range(count)]


# -- errors ------------------------------------------------------------------

def test_read_many_raises_the_first_error_after_every_reply(client):
    client.write_many({b"/e/a": b"A", b"/e/c": b"C"})
    rvars = keep_rvars(client)
    paths = [b"/e/a", b"/e/missing1"] + [b"/e/c"] * 100 + [b"/e/missing2"]
    with pytest.raises(PyXSError) as info:
        client.read_many(paths)
    exc = info.value
    assert exc.args == (errno.ENOENT, "No such file or directory")
    assert exc.path == b"/e/missing1" and exc.op == "READ"
    assert "READ /e/missing1" in str(exc)
    assert len(rvars) == len(paths) and all(r.done() for r in rvars)
    # The connection goes on as if nothing happened.
    assert client.read_many([b"/e/c", b"/e/a"]) == [b"C", b"A"]


def test_read_many_default_replaces_only_missing_paths(client):
    client.write(b"/d/a", b"A")
    assert client.read_many([b"/d/a", b"/d/nope", "/d/a"], default=b"") == \
        [b"A", b"", b"A"]
    assert client.read_many([b"/d/nope"], default="dflt") == [b"dflt"]


def test_pipeline_settles_every_future_before_raising(client):
    with pytest.raises(PyXSError) as info:
        with client.pipeline() as p:
            missing = p.read(b"/p/missing")
            written = p.write(b"/p/x", b"1")
            made = p.mkdir(b"/p/dir")
            again = p.read(b"/p/x")
            assert len(p) == 4
    assert info.value.args[0] == errno.ENOENT
    assert info.value.path == b"/p/missing"
    assert missing.exception() is info.value
    assert written.result() is None and made.result() is None
    assert again.result() == b"1"
    assert client.read(b"/p/x") == b"1" and client.list(b"/p/dir") == []


def test_pipeline_result_sends_what_is_queued(client):
    writes = Writes(client)
    with client.pipeline() as p:
        p.write(b"/q/a", b"A")
        first = p.read(b"/q/a", default=b"none")
        assert first.result() == b"A" and writes.count == 1
        later = p.delete(b"/q/a")
        gone = p.read(b"/q/a", default=b"none")
    assert later.result() is None and gone.result() == b"none"
    assert writes.count == 2


def test_pipeline_left_on_an_exception_sends_no_more(client):
    sent = SendLog(client)
    with pytest.raises(KeyError):
        with client.pipeline() as p:
            future = p.write(b"/never", b"x")
            raise KeyError("user code failed")
    assert sent.ops == []
    assert future.exception().args[0] == errno.ECANCELED
    assert client.read(b"/never", b"absent") == b"absent"


# -- validation before sending ---------------------------------------------

def test_write_many_refuses_an_oversized_item_before_sending(daemon,
                                                            client):
    sent = SendLog(client)
    path = b"/big"
    largest = 4096 - len(path) - 1
    with pytest.raises(InvalidPayload) as info:
        client.write_many([(b"/first", b"ok"), (path, b"x" * (largest + 1))])
    message = str(info.value)
    assert "write_many item 1" in message and "/big" in message
    assert "4096" in message and len(message) < 300
    assert sent.ops == []
    # The largest value is sent (oxenstored holds even dom0 to its
    # 2048-byte value quota and refuses it itself).
    outcome = expect(daemon.kind, {"default": None,
                                   "oxenstored": errno.E2BIG})
    if outcome is None:
        client.write_many([(b"/first", b"ok"), (path, b"x" * largest)])
        assert client.read_many([b"/first", path]) == [b"ok", b"x" * largest]
    else:
        with pytest.raises(PyXSError) as info:
            client.write_many([(b"/first", b"ok"), (path, b"x" * largest)])
        assert info.value.args[0] == outcome and info.value.path == path
        assert client.read(b"/first") == b"ok"


@pytest.mark.parametrize("items, exc_type, text", [
    ([(b"/ok", b"v"), (b"/bad//path", b"v")], InvalidPath, "item 1"),
    ([(b"/ok", b"v"), (b"/x", 5)], TypeError, "item 1: value must be"),
    ([(b"/ok", b"v"), (b"/x",)], TypeError, "item 1: expected a (path"),
    ([b"/ok"], TypeError, "item 0"),
    ("/a", TypeError, "not a single str"),
])
def test_write_many_refuses_bad_items_before_sending(client, items,
                                                      exc_type, text):
    sent = SendLog(client)
    with pytest.raises(exc_type) as info:
        client.write_many(items)
    assert text in str(info.value)
    assert sent.ops == []
    assert client.read(b"/ok", b"unwritten") == b"unwritten"


def test_read_many_refuses_bad_paths_before_sending(client):
    sent = SendLog(client)
    with pytest.raises(InvalidPath) as info:
        client.read_many([b"/fine", b"/trailing/"])
    assert "read_many item 1" in str(info.value)
    with pytest.raises(TypeError):
        client.read_many(b"/a/single/path")
    with pytest.raises(TypeError):
        client.read_many([b"/fine", 3])
    assert sent.ops == []
    assert client.read_many([b"/"], default=b"") == [b""]


# -- transactions ---------------------------------------------------------

def test_batches_join_the_transaction(daemon, client):
    client.write(b"/tx/a", b"old")
    with daemon.client(timeout=BOUND) as other:
        client.transaction()
        client.write_many({b"/tx/a": b"new", b"/tx/b": b"B"})
        assert client.read_many([b"/tx/a", b"/tx/b"]) == [b"new", b"B"]
        assert other.read_many([b"/tx/a", b"/tx/b"], default=b"-") == \
            [b"old", b"-"]
        assert client.commit()
        assert other.read_many([b"/tx/a", b"/tx/b"]) == [b"new", b"B"]


def test_failed_batch_inside_a_transaction_then_commit(client):
    client.transaction()
    with pytest.raises(PyXSError):
        client.read_many([b"/tx2/missing"])
    client.write_many([(b"/tx2/k", b"v")])
    assert client.commit()
    assert client.read(b"/tx2/k") == b"v"


# -- timeouts -------------------------------------------------------------

def test_a_stalled_batch_times_out_and_the_late_replies_are_dropped(daemon):
    with daemon.client(timeout=0.3) as c:
        c.write_many({b"/s/a": b"before", b"/s/b": b"B"})
        with stopped(daemon):
            with pytest.raises(TimeoutError) as info:
                c.read_many([b"/s/a", b"/s/b"])
            assert info.value.path == b"/s/a" and "READ" in str(info.value)
        c.write(b"/s/a", b"after")
        assert c.read_many([b"/s/b", b"/s/a"]) == [b"B", b"after"]


def test_batches_from_many_threads_share_the_connection(client):
    errors = []

    def worker(n):
        try:
            keys = [b"/thr/%d/%d" % (n, i) for i in range(50)]
            client.write_many((k, k) for k in keys)
            assert client.read_many(keys) == keys
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert errors == [] and not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("mode", [{}, {"chunk": 7, "seed": 1}])
def test_batches_over_xenbus(daemon, mode):
    from pyxs import Client
    from pyxs.testing.xenbus import XenBusRelay
    with XenBusRelay(daemon.socket_path, **mode) as relay, \
            Client(xen_bus_path=relay.device, timeout=BOUND) as c:
        keys = [b"/xb/k%d" % i for i in range(50)]
        c.write_many((k, k) for k in keys)
        assert c.read_many(keys) == keys
        # XenBus carries 16 bytes less per request: refused before sending.
        limit = 4096 - 16 - len(b"/xb/v") - 1
        with pytest.raises(InvalidPayload) as info:
            c.write_many([(b"/xb/ok", b"v"), (b"/xb/v", b"v" * (limit + 1))])
        assert "4080" in str(info.value)
        assert c.read(b"/xb/ok", b"unsent") == b"unsent"
