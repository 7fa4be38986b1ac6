"""pyxs.aio against real daemons: every coroutine, transactions, watches,
cancellation, timeouts, the dying connection, batches and XenBus."""

import asyncio
import builtins
import errno
import os
import signal

import pytest
from conftest import expect
from xsassert import BOUND, stopped

import pyxs
import pyxs.aio
from pyxs.connection import UnixSocketConnection
from pyxs.exceptions import (
    ConnectionError,
    InvalidPath,
    InvalidPayload,
    PyXSError,
    TimeoutError,
)
from pyxs.testing.xenbus import XenBusRelay


def run(daemon, body, timeout=BOUND, path=None, **kwargs):
    """Runs ``await body(client)`` on a fresh event loop, bounded; fails
    if any callback of the loop raised (the loop would only log it)."""
    async def main():
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context))
        async with pyxs.aio.Client(
                unix_socket_path=path or daemon.socket_path,
                timeout=timeout, **kwargs) as c:
            return await body(c)
    errors = []
    result = asyncio.run(asyncio.wait_for(main(), 60))
    assert errors == []
    return result


async def raises(exc_type, awaitable):
    with pytest.raises(exc_type) as info:
        await awaitable
    return info.value


# -- every call --------------------------------------------------------------

def test_nodes(daemon):
    async def body(c):
        await c.write(b"/a/b", b"bytes")
        await c.write("/a/c", "text")
        assert await c.read(b"/a/b") == b"bytes"
        assert await c.read("/a/c") == b"text"
        assert await c.read(b"/a") == b""  # a parent written for us
        assert sorted(await c.list(b"/a")) == [b"b", b"c"]
        assert await c.exists(b"/a/b") and not await c.exists(b"/nope")
        await c.mkdir(b"/a/d")
        assert await c.read(b"/a/d") == b"" and await c.list(b"/a/d") == []
        await c.delete(b"/a/b")
        assert not await c.exists(b"/a/b")
        await c.delete(b"/a/b")  # gone already: fine
        assert await c.read(b"/a/b", b"dflt") == b"dflt"
        exc = await raises(PyXSError, c.read(b"/a/b"))
        assert exc.args == (errno.ENOENT, "No such file or directory")
        assert "READ /a/b" in str(exc)
        value = bytes(range(256))
        await c.write(b"/bin", value)
        assert await c.read(b"/bin") == value
    run(daemon, body)


def test_permissions_domains_and_raw_commands(daemon):
    with daemon.client(timeout=BOUND) as threaded:
        introduced = {d: threaded.is_domain_introduced(d) for d in (0, 5)}

    async def body(c):
        await c.write(b"/p", b"v")
        await c.set_perms(b"/p", [b"n0", b"r5"])
        assert await c.get_perms(b"/p") == [b"n0", b"r5"]
        assert await c.get_domain_path(7) == b"/local/domain/7"
        assert await c.is_domain_introduced(0) is introduced[0]
        assert await c.is_domain_introduced(5) is introduced[5] is False
        assert await c.execute_command(pyxs._internal.Op.READ, b"/p",
                                       nul_terminated=True) == b"v"
        await c.reset_watches()
    run(daemon, body)


def test_long_listing_is_fetched_in_parts(daemon):
    names = [b"child-with-a-longish-name-%04d" % i for i in range(300)]

    async def body(c):
        await c.write_many((b"/big/" + name, b"x") for name in names)
        assert sorted(await c.list(b"/big")) == names
        walked = [path async for path, _, _ in c.walk(b"/big")]
        assert sorted(walked[1:]) == [b"/big/" + name for name in names]
    run(daemon, body)


def test_bad_input_is_refused_as_the_threaded_client_refuses_it(daemon):
    cases = [
        ("read", (b"/a//b",)), ("write", (b"/x", b"v" * 5000)),
        ("write", (b"/x", 3)), ("set_perms", (b"/x", [b"q1"])),
        ("set_perms", (b"/x", "n0")), ("get_domain_path", ("1",)),
        ("introduce_domain", (1, -1, 2)), ("control", ()),
        ("control", (b"a\x00b",)), ("list", ("/é",)),
        ("read_many", ([b"/ok", b"bad"],)), ("write_many", ("/a",)),
        ("write_many", ([(b"/ok", b"v"), (b"/x",)],)),
    ]
    threaded = []
    with daemon.client(timeout=BOUND) as c:
        for name, args in cases:
            with pytest.raises(Exception) as info:
                getattr(c, name)(*args)
            threaded.append((type(info.value), str(info.value),
                             info.value.args))

    async def body(c):
        seen = []
        for name, args in cases:
            with pytest.raises(Exception) as info:
                await getattr(c, name)(*args)
            seen.append((type(info.value), str(info.value),
                         info.value.args))
        assert await c.read(b"/x", b"unwritten") == b"unwritten"
        return seen
    assert run(daemon, body) == threaded


# -- batches -----------------------------------------------------------------

def test_read_many_and_write_many(daemon):
    paths = [b"/m/k%d" % i for i in range(300)]

    async def body(c):
        await c.write_many([(p, p) for p in paths] + [(paths[0], b"last")])
        assert await c.read_many(paths) == [b"last"] + paths[1:]
        assert await c.read_many([b"/m/k1", b"/m/none"], default=b"-") == \
            [b"/m/k1", b"-"]
        exc = await raises(PyXSError, c.read_many(
            [b"/m/k1", b"/m/none", b"/m/k2"]))
        assert exc.args[0] == errno.ENOENT and exc.path == b"/m/none"
        exc = await raises(InvalidPayload, c.write_many(
            {b"/m/ok": b"v", b"/m/big": b"v" * 4100}))
        assert "write_many item 1" in str(exc) and len(str(exc)) < 300
        assert await c.read(b"/m/ok", b"unsent") == b"unsent"
        assert await c.read_many([]) == []
    run(daemon, body)


def test_pipeline(daemon):
    async def body(c):
        async with c.pipeline() as p:
            written = p.write(b"/pl/a", b"A")
            made = p.mkdir(b"/pl/d")
            value = p.read(b"/pl/a")
            missing = p.read(b"/pl/none", default=b"-")
            assert len(p) == 4 and not value.done()
        assert written.result() is None and made.result() is None
        assert value.result() == b"A" and missing.result() == b"-"
        with pytest.raises(PyXSError) as info:
            async with c.pipeline() as p:
                gone = p.read(b"/pl/none")
                deleted = p.delete(b"/pl/a")
        assert info.value.path == b"/pl/none" and gone.exception() is \
            info.value
        assert deleted.result() is None
        assert await c.read(b"/pl/a", b"deleted") == b"deleted"
    run(daemon, body)


# -- many coroutines, one connection -----------------------------------------

def test_concurrent_coroutines_share_the_connection(daemon):
    async def worker(c, n):
        for i in range(20):
            await c.write(b"/co/%d/%d" % (n, i), b"%d" % i)
        return [await c.read(b"/co/%d/%d" % (n, i)) for i in range(20)]

    async def body(c):
        results = await asyncio.gather(*(worker(c, n) for n in range(16)))
        assert results == [[b"%d" % i for i in range(20)]] * 16
    run(daemon, body)


class CountingConnection(UnixSocketConnection):
    """A Unix socket connection that records each write it is given."""

    def __init__(self, path):
        super().__init__(path)
        self.writes = []

    def writer(self):
        real = super().writer()

        def write(data):
            self.writes.append(bytes(data))
            return real(data)
        return write


def test_requests_of_one_turn_of_the_loop_share_a_write(daemon):
    async def main():
        connection = CountingConnection(daemon.socket_path)
        async with pyxs.aio.Client(router=pyxs.aio.AsyncRouter(connection),
                                   timeout=BOUND) as c:
            await c.write(b"/wc", b"v")
            assert len(connection.writes) == 1
            values = await asyncio.gather(*(c.read(b"/wc")
                                            for _ in range(8)))
            assert values == [b"v"] * 8
            assert 1 < len(connection.writes) <= 4  # not one per request
        connection.close()
    asyncio.run(asyncio.wait_for(main(), 60))


# -- walk --------------------------------------------------------------------

def test_walk_matches_the_threaded_walk(daemon):
    with daemon.client(timeout=BOUND) as c:
        for d in range(3):
            for k in range(70):  # more than a directory's look-ahead
                c.write(b"/w/d%d/k%d" % (d, k), b"v%d" % k)
        c.write(b"/w/d1/k5/deep", b"x")
        expected = {topdown: list(c.walk(b"/w", topdown))
                    for topdown in (True, False)}

    async def body(c):
        for topdown in (True, False):
            got = [node async for node in c.walk(b"/w", topdown)]
            assert got == expected[topdown]
        pruned = []
        async for path, _, children in c.walk(b"/w"):
            pruned.append(path)
            if path == b"/w":
                children.remove(b"d1")
        assert not any(p.startswith(b"/w/d1") for p in pruned)
        assert len(pruned) == 1 + 2 * 71
        exc = await raises(PyXSError, c.walk(b"/nowhere").__anext__())
        assert exc.args[0] == errno.ENOENT
        with pytest.raises(InvalidPath):
            c.walk(b"bad//")
    run(daemon, body)


# -- transactions ------------------------------------------------------------

def test_transaction_commits_rolls_back_and_conflicts(daemon):
    async def body(c):
        async with c.transaction() as t:
            await t.write(b"/t/a", b"1")
            assert await c.read(b"/t/a", b"outside") == b"outside"
            assert await t.read(b"/t/a") == b"1"
        assert await c.read(b"/t/a") == b"1"
        with pytest.raises(KeyError):
            async with c.transaction() as t:
                await t.write(b"/t/a", b"2")
                raise KeyError("abort")
        assert await c.read(b"/t/a") == b"1"
        with pytest.raises(pyxs.TransactionConflict):
            async with c.transaction() as t:
                await t.read(b"/t/a")
                await t.write(b"/t/a", b"mine")
                await c.write(b"/t/a", b"theirs")  # outside: a conflict
        assert await c.read(b"/t/a") == b"theirs"
    run(daemon, body)


def test_run_transaction_retries_racing_coroutines(daemon):
    async def increment(t):
        value = int(await t.read(b"/counter"))
        await asyncio.sleep(0)  # let the others interleave
        await t.write(b"/counter", b"%d" % (value + 1))
        return value

    async def body(c):
        await c.write(b"/counter", b"0")
        await asyncio.gather(*(c.run_transaction(increment, attempts=100)
                               for _ in range(8)))
        assert await c.read(b"/counter") == b"8"
        with pytest.raises(ZeroDivisionError):
            await c.run_transaction(lambda t: asyncio.sleep(1 / 0))

        attempts = []

        async def always_conflicts(t):
            await t.read(b"/counter")
            await t.write(b"/counter", b"x")
            attempts.append(None)
            await c.write(b"/counter", b"outside-%d" % len(attempts))
        with pytest.raises(pyxs.TransactionConflict):
            await c.run_transaction(always_conflicts, attempts=2,
                                    backoff=0)
        assert len(attempts) == 2
        assert await c.read(b"/counter") == b"outside-2"
    run(daemon, body)


# -- watches -----------------------------------------------------------------

def test_monitor_events_and_async_for(daemon):
    async def body(c):
        async with c.monitor() as m:
            await m.watch(b"/ev", b"tok")
            assert await m.get(BOUND) == (b"/ev", b"tok")  # at once
            await c.write(b"/ev/a", b"1")
            assert await m.get(BOUND) == (b"/ev/a", b"tok")
            await c.write(b"/ev/b", b"2")
            async for event in m:
                assert event == (b"/ev/b", b"tok")
                break
            assert m.watched == {b"/ev"}
            await m.unwatch(b"/ev", b"tok")
            assert m.watched == set()
            exc = await raises(TimeoutError, m.get(0.05))
            assert "no watch event" in str(exc)
    run(daemon, body)


def test_wait_for(daemon):
    async def body(c):
        async def ready(client):
            return await client.read(b"/state", b"") == b"up"

        async def later():
            await c.write(b"/state", b"booting")
            await c.write(b"/state", b"up")
        task = asyncio.ensure_future(later())
        assert await pyxs.aio.wait_for(c, ready, [b"/state"], BOUND)
        await task
        await raises(TimeoutError, pyxs.aio.wait_for(
            c, lambda client: None, [b"/state"], 0.05))
    run(daemon, body)


# -- cancellation, timeouts, the end -----------------------------------------

def test_cancelled_call_abandons_its_request(daemon):
    async def body(c):
        await c.write(b"/x", b"before")
        with stopped(daemon):
            task = asyncio.ensure_future(c.read(b"/x"))
            other = asyncio.ensure_future(c.read(b"/x"))
            await asyncio.sleep(0)  # the tasks send, then wait
            task.cancel()
            await raises(asyncio.CancelledError, task)
        assert await other == b"before"
        # The late reply is dropped; later requests get their own.
        await c.write(b"/x", b"after")
        assert await c.read(b"/x") == b"after"
        assert await c.read_many([b"/x", b"/x"]) == [b"after", b"after"]
    run(daemon, body)


def test_timeout_names_the_call_and_leaves_the_connection_usable(daemon):
    async def body(c):
        loop = asyncio.get_running_loop()
        await c.write(b"/t", b"before")
        with stopped(daemon):
            exc = await raises(TimeoutError, c.read(b"/t"))
            assert isinstance(exc, builtins.TimeoutError)
            assert "READ /t" in str(exc)
            started = loop.time()
            exc = await raises(TimeoutError, c.read_many([b"/t"] * 100))
            assert loop.time() - started < 5  # one timeout, not 100
            assert exc.path == b"/t"
        await c.write(b"/t", b"after")
        assert await c.read(b"/t") == b"after"
    run(daemon, body, timeout=0.3)


def test_dying_connection_fails_every_waiter_at_once(daemon):
    async def body(c):
        m = c.monitor()
        await m.watch(b"/d", b"d")
        await m.get(BOUND)
        os.kill(daemon.pid, signal.SIGSTOP)
        waiters = [asyncio.ensure_future(c.read(b"/d", b""))
                   for _ in range(5)]
        waiters.append(asyncio.ensure_future(m.get()))
        await asyncio.sleep(0)  # every waiter sent its request, and waits
        daemon.kill()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        await raises(ConnectionError, c.read(b"/d"))
        await raises(ConnectionError, m.get())
    run(daemon, body, timeout=None)


def test_not_connected_and_closed(daemon):
    async def body():
        c = pyxs.aio.Client(unix_socket_path=daemon.socket_path)
        exc = await raises(ConnectionError, c.read(b"/"))
        assert "not connected" in str(exc)
        async with c:
            assert await c.read(b"/", b"") == b""
        await raises(ConnectionError, c.read(b"/"))
        missing = pyxs.aio.Client(unix_socket_path=daemon.socket_path + "x")
        exc = await raises(ConnectionError, missing.connect())
        assert "cannot connect" in str(exc)
    asyncio.run(asyncio.wait_for(body(), 60))


# -- XenBus ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [{}, {"watch_rq_id_zero": True,
                                       "bare_events": True},
                                  {"chunk": 7, "seed": 1}])
def test_over_xenbus(daemon, mode):
    async def body(c):
        await c.write_many({b"/xb/a": b"A", b"/xb/b": b"B"})
        assert await c.read_many([b"/xb/a", b"/xb/b"]) == [b"A", b"B"]
        async with c.monitor() as m:
            await m.watch(b"/xb", b"t")
            assert await m.get(BOUND) == (b"/xb", b"t")
            await c.write(b"/xb/a", b"again")
            assert await m.get(BOUND) == (b"/xb/a", b"t")
        limit = 4096 - 16 - len(b"/xb/v") - 1
        await raises(InvalidPayload, c.write(b"/xb/v", b"v" * (limit + 1)))
        outcome = expect(daemon.kind, {"default": None,
                                       "oxenstored": errno.E2BIG})
        if outcome is None:
            await c.write(b"/xb/v", b"v" * limit)
    with XenBusRelay(daemon.socket_path, **mode) as relay:
        async def main():
            async with pyxs.aio.Client(xen_bus_path=relay.device,
                                       timeout=BOUND) as c:
                await body(c)
        asyncio.run(asyncio.wait_for(main(), 60))
