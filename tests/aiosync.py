"""pyxs.aio.Client driven from synchronous test code.

``SyncAio(...)`` takes pyxs.aio.Client's arguments; every coroutine method
of the client becomes a plain call that runs the coroutine to its end on
the adapter's own event loop (one loop per adapter, no thread), so a test
battery written for pyxs.Client runs unchanged against pyxs.aio.
"""

import asyncio
from typing import Any, Callable, List

import pyxs.aio

# A test that hangs fails here rather than stalling the suite.
BOUND = 60


class SyncAio:
    def __init__(self, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = pyxs.aio.Client(**kwargs)

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(coro, BOUND))

    def __enter__(self) -> "SyncAio":
        self._run(self.client.connect())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._run(self.client.close())
        finally:
            self._loop.close()

    @property
    def tx_id(self) -> int:
        return self.client.tx_id

    def walk(self, top: Any, topdown: bool = True) -> List[Any]:
        async def collect() -> List[Any]:
            return [node async for node in self.client.walk(top, topdown)]
        return list(self._run(collect()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if not asyncio.iscoroutinefunction(method):
            raise AttributeError("%s is not a coroutine method" % name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))
