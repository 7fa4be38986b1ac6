"""pyxs.aio: XenStore from asyncio, on the event loop, without a thread.

::

    import pyxs.aio

    async with pyxs.aio.Client() as c:
        await c.write(b"/vm/1/state", b"running")
        async with c.transaction() as t:
            await t.write_many({b"/vm/1/a": b"1", b"/vm/1/b": b"2"})
        async with c.monitor() as m:
            await m.watch(b"/vm/1/state", b"state")
            async for path, token in m:
                ...

Many coroutines share one client and its connection; their requests are
pipelined. The methods, their validation and their errors are those of
:class:`pyxs.Client`. A coroutine cancelled while it waits abandons its
request (the late reply is dropped); a connection that dies fails every
waiter at once with :class:`pyxs.ConnectionError`.
"""

from ._client import Client, Pipeline, Transaction
from ._monitor import Monitor, wait_for
from ._router import AsyncRouter

__all__ = ["Client", "Transaction", "Pipeline", "Monitor", "wait_for",
           "AsyncRouter"]
