"""Watches on the event loop: :class:`Monitor` and :func:`wait_for`.

A monitor subscribes to its tokens in the connection's watch fan-out
(:class:`~pyxs._fanout.WatchFanout`); the connection's reader callback
hands it events, which wait in an unbounded queue (an undrained monitor
never holds up other users of the connection) until :meth:`Monitor.get`
or ``async for`` takes them.

Invariants: an event is delivered to a monitor only while it watches the
event's token; when the connection ends, every waiting and later
:meth:`~Monitor.get` raises ConnectionError, events queued before the end
first.
"""

import asyncio
import itertools
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterable,
    Optional,
    Set,
    Tuple,
    Union,
)

from .. import _requests as R
from .._depth import check_depth, is_watched, plan_depth, too_deep
from .._features import known_features, remember_features
from .._internal import Event
from ..exceptions import (
    ConnectionError,
    PyXSError,
    TimeoutError,
    UnsupportedOperation,
)
from ..helpers import validate_watch_path

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client

__all__ = ["Monitor", "wait_for"]

Path = Union[bytes, str]

_wait_tokens = itertools.count()


class Monitor:
    """Watches paths; ``async with c.monitor() as m:``.

    ::

        async with pyxs.aio.Client() as c, c.monitor() as m:
            await m.watch(b"/vm/1/state", b"state")
            async for path, token in m:
                ...

    Leaving the block removes the monitor's watches.
    """

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._events: Deque[Any] = deque()
        self._waiter: "Optional[asyncio.Future[None]]" = None
        self._lost: Optional[PyXSError] = None
        self._watches: Set[Tuple[bytes, bytes]] = set()
        #: Depths this monitor filters itself (the daemon lacks WATCHDEPTH).
        self._depths: Dict[Tuple[bytes, bytes], int] = {}
        client.router.attach(self)

    def __repr__(self) -> str:
        return "pyxs.aio.Monitor(%r, watched=%d)" % (self.client,
                                                     len(self._watches))

    async def __aenter__(self) -> "Monitor":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.client.router.is_connected:
            await self.close()

    @property
    def watched(self) -> Set[bytes]:
        """The paths this monitor watches."""
        return {wpath for wpath, _ in self._watches}

    async def close(self) -> None:
        """Removes every watch of this monitor."""
        for wpath, token in list(self._watches):
            await self.unwatch(wpath, token)

    async def watch(self, wpath: Path, token: Union[bytes, str],
                    depth: Optional[int] = None) -> None:
        """Adds a watch (see :meth:`pyxs.Monitor.watch`, ``depth``
        included); its first event fires at once."""
        checked = validate_watch_path(wpath, "watch")
        depth, needed = check_depth(checked, depth)
        sent = own = None
        if needed:
            sent, own = plan_depth(checked, depth, await self._features())
        request = R.watch(checked, token, sent)
        checked_token = request.payload.split(b"\x00")[1]
        key = (checked, checked_token)
        if own is not None and key not in self._watches:
            self._depths[key] = own
        router = self.client.router
        router.subscribe(checked_token, self)  # before the first event
        try:
            await self.client._call(request)
        except BaseException:
            if key not in self._watches:
                self._depths.pop(key, None)
            if not any(t == checked_token for _, t in self._watches):
                router.unsubscribe(checked_token, self)
            raise
        self._watches.add(key)

    async def _features(self) -> int:
        """The daemon's features, asked once per connection."""
        router = self.client.router
        known = known_features(router)
        if known is None:
            try:
                known = int(await self.client.get_features())
            except UnsupportedOperation:
                known = 0
                remember_features(router, known)
        return known

    async def unwatch(self, wpath: Path, token: Union[bytes, str]) -> None:
        """Removes a watch; events already queued stay."""
        request = R.unwatch(wpath, token)
        checked_token = request.payload.split(b"\x00")[1]
        await self.client._call(request)
        assert request.path is not None
        self._watches.discard((request.path, checked_token))
        self._depths.pop((request.path, checked_token), None)
        if not any(t == checked_token for _, t in self._watches):
            self.client.router.unsubscribe(checked_token, self)

    # -- called by the connection's reader ---------------------------------

    def deliver(self, event: Event) -> None:
        if self._depths and too_deep(event[0], event[1], self._watches,
                                     self._depths):
            return  # below the depth of a watch the daemon cannot limit
        self._events.append(event)
        self._wake()

    def connection_lost(self, error: PyXSError) -> None:
        if self._lost is None:
            self._lost = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- taking events --------------------------------------------------------

    async def _take(self, timeout: Optional[float]) -> Event:
        while not self._events:
            if self._lost is not None:
                raise ConnectionError(*self._lost.args)
            self._waiter = waiter = \
                asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError("no watch event within %g s"
                                   % (timeout or 0)) from None
            finally:
                self._waiter = None
        event: Event = self._events.popleft()
        return event

    async def get(self, timeout: Optional[float] = None,
                  unwatched: bool = False) -> Event:
        """The next event for a watched path, waiting up to ``timeout``.

        :raises pyxs.exceptions.TimeoutError: if none arrives in time.
        :raises pyxs.exceptions.ConnectionError: if the connection died.
        """
        while True:
            event = await self._take(timeout)
            if unwatched or is_watched(event, self._watches):
                return event

    def __aiter__(self) -> "Monitor":
        return self

    async def __anext__(self) -> Event:
        return await self.get()


async def wait_for(client: "Client",
                   condition: Callable[["Client"], Any],
                   paths: Iterable[Path],
                   timeout: Optional[float] = None) -> Any:
    """Waits until ``condition(client)`` (a function or a coroutine
    function) returns something other than None or False, re-evaluating
    it whenever one of ``paths`` changes; as :func:`pyxs.wait_for`.

    :raises pyxs.exceptions.TimeoutError: when ``timeout`` seconds pass
        first.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    token = b"pyxs-aio-wait-%d" % next(_wait_tokens)
    async with client.monitor() as monitor:
        for path in paths:
            await monitor.watch(path, token)
        while True:
            result = condition(client)
            if isinstance(result, Awaitable):
                result = await result
            if result is not None and result is not False:
                return result
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError("condition not met within %g s"
                                   % (timeout or 0))
            await monitor.get(timeout=left)
            # Coalesce a burst of events into one re-evaluation.
            monitor._events.clear()

