"""pyxs.aio facing a broken peer (a fake daemon: real ones do not send
these), and stalled batches."""

import asyncio

import pytest
from fakedaemon import FakeDaemon, honest
from xsassert import BOUND, stopped

import pyxs.aio
from pyxs._internal import HEADER, Op
from pyxs.exceptions import ConnectionError, InvalidPath, UnexpectedPacket


def run(body, path, timeout=BOUND):
    async def main():
        async with pyxs.aio.Client(unix_socket_path=path,
                                   timeout=timeout) as c:
            return await body(c)
    return asyncio.run(asyncio.wait_for(main(), 60))


def test_reply_of_another_op_or_transaction_is_refused():
    def wrong(conn, request):
        if request.payload.startswith(b"/op"):
            conn.reply(request, b"OK\0", op=Op.WRITE)
        elif request.payload.startswith(b"/tx"):
            conn.reply(request, b"value", tx_id=42)
        elif request.op == Op.TRANSACTION_START:
            conn.reply(request, b"not-a-number\0")
        else:
            honest(conn, request)

    async def body(c):
        for path in (b"/op", b"/tx"):
            with pytest.raises(UnexpectedPacket) as info:
                await c.read(path)
            assert "READ" in str(info.value)
        with pytest.raises(UnexpectedPacket):
            async with c.transaction():
                pass
        assert await c.read(b"/fine") == b"value"  # still usable
    with FakeDaemon(wrong) as fake:
        run(body, fake.socket_path)


def test_oversized_header_fails_every_waiter():
    def hostile(conn, request):
        if request.payload.startswith(b"/hostile"):
            conn.send_raw(HEADER.pack(Op.READ, request.rq_id, 0, 1 << 20))

    async def body(c):
        waiters = [asyncio.ensure_future(c.read(b"/hostile/%d" % i))
                   for i in range(3)]
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, UnexpectedPacket) for r in results[:1])
        assert all(isinstance(r, (UnexpectedPacket, ConnectionError))
                   for r in results), results
        with pytest.raises(ConnectionError):
            await c.read(b"/after")
    with FakeDaemon(hostile) as fake:
        run(body, fake.socket_path)


def test_peer_closing_mid_packet_fails_waiters_with_connection_error():
    def half(conn, request):
        conn.send_raw(HEADER.pack(Op.READ, request.rq_id, 0, 10) + b"abc")
        conn.close()

    async def body(c):
        with pytest.raises(ConnectionError) as info:
            await c.read(b"/x")
        assert "middle of a packet" in str(info.value)
    with FakeDaemon(half) as fake:
        run(body, fake.socket_path)


def test_cancelled_batch_abandons_every_request(daemon):
    async def body(c):
        await c.write_many({b"/b/a": b"A", b"/b/b": b"B"})
        with stopped(daemon):
            task = asyncio.ensure_future(
                c.read_many([b"/b/a", b"/b/b"] * 100))
            await asyncio.sleep(0)  # sent, waiting
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await c.read_many([b"/b/b", b"/b/a"]) == [b"B", b"A"]
        with pytest.raises(InvalidPath):
            await c.write_many([(b"/b/c", b"C"), (b"/b/a/..", b"x")])
        assert await c.read(b"/b/c", b"-") == b"-"  # nothing was sent
    run(body, daemon.socket_path)


def test_connect_times_out_on_a_stopped_daemon(daemon):
    async def body():
        # Fill the stopped daemon's backlog so that connecting blocks.
        clients = []
        with stopped(daemon):
            for _ in range(200):
                c = pyxs.aio.Client(unix_socket_path=daemon.socket_path,
                                    timeout=0.2)
                try:
                    await c.connect()
                except pyxs.TimeoutError as exc:
                    assert "no answer within 0.2 s" in str(exc)
                    break
                clients.append(c)
            else:
                pytest.fail("200 connections accepted by a stopped daemon")
        for c in clients:
            await c.close()
    asyncio.run(asyncio.wait_for(body(), 60))




def test_reply_for_an_unknown_request_is_dropped_with_a_warning(caplog):
    def stray_then_real(conn, request):
        conn.reply(request, b"stray", rq_id=request.rq_id + 1000)
        honest(conn, request)

    async def body(c):
        assert await c.read(b"/x") == b"value"
        assert await c.read(b"/y") == b"value"
    with FakeDaemon(stray_then_real) as fake:
        run(body, fake.socket_path)
    assert any("unknown request id" in r.getMessage()
               for r in caplog.records if r.name == "pyxs.aio")
