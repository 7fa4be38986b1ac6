"""Monitor: watches on a client's connection, and the events they fire.

A monitor shares its client's :class:`~pyxs.router.Router`. The router hands
it events (:meth:`Monitor.deliver`) and the news of the end
(:meth:`Monitor.connection_lost`): the two calls of
:class:`pyxs._fanout.Subscriber`. Both run in whichever thread reads the
connection and never block.

Invariant: under the monitor's lock, the descriptor of :meth:`fileno`
holds exactly one byte per item in :attr:`Monitor.events`, so it is
readable exactly while an event (or the end) is queued.
"""

import os
import queue
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    Optional,
    Set,
    Tuple,
    Union,
)

from . import _requests as requests
from ._depth import check_depth, is_watched, plan_depth, too_deep
from ._features import (
    known_features,
    remember_features,
)
from ._internal import Event
from ._wakeup import Wakeup
from .exceptions import (
    ConnectionError,
    PyXSError,
    TimeoutError,
    UnsupportedOperation,
)
from .helpers import validate_timeout, validate_token, validate_watch_path

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Monitor"]

Path = Union[bytes, str]


def _depth_field(client: "Client", wpath: bytes, depth: Optional[int]
                 ) -> Tuple[Optional[int], Optional[int]]:
    """For :meth:`Monitor.watch`: the depth to send, and the depth the
    monitor filters by itself (see :func:`pyxs._depth.plan_depth`). Asks
    GET_FEATURE once per connection (ENOSYS: nothing offered)."""
    depth, needed = check_depth(wpath, depth)
    if not needed:
        return None, None
    known = known_features(client.router)
    if known is None:
        try:
            known = int(client.get_features())
        except UnsupportedOperation:
            known = 0
            remember_features(client.router, known)
    return plan_depth(wpath, depth, known)


class _Lost:
    """Queued for a monitor when the connection dies."""

    __slots__ = ("error",)

    def __init__(self, error: PyXSError) -> None:
        self.error = error


class Monitor:
    """Watches XenStore paths and delivers their events.

    ::

        with Client() as c, c.monitor() as m:
            m.watch(b"/vm/1/state", b"state")
            for path, token in m.wait(timeout=30):
                ...

    The monitor shares its client's router. Events arrive in
    :attr:`events` (a queue) as :class:`~pyxs._internal.Event` tuples; the
    queue is unbounded, so an undrained monitor never blocks other users of
    the connection. :meth:`fileno` makes the monitor usable with
    ``select``. Used as a context manager, the monitor keeps the
    connection open and removes all its watches on exit.
    """

    def __init__(self, client: "Client") -> None:
        self.client = client.__copy__()
        self._parent = client
        #: The queue of :class:`~pyxs._internal.Event` tuples (and, once the
        #: connection ends, a marker that makes every later wait fail).
        self.events: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.unwatch_queue: Set[Tuple[bytes, bytes]] = set()
        #: Depths this monitor enforces itself (daemon lacks WATCHDEPTH).
        self._depths: Dict[Tuple[bytes, bytes], int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._signal: Optional[Wakeup] = None
        attach = getattr(self.client.router, "attach", None)
        if attach is not None:  # test doubles of the router may lack it
            attach(self)

    def __enter__(self) -> "Monitor":
        self.client.connect()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self.client.router.is_connected:
                self.close()
        finally:
            self.client.close()
            self._close_signal()

    def __repr__(self) -> str:
        return "Monitor(%r, watched=%d)" % (self.client,
                                            len(self.unwatch_queue))

    @property
    def watched(self) -> Set[bytes]:
        """The paths this monitor watches."""
        return {wpath for wpath, _ in self.unwatch_queue}

    def close(self) -> None:
        """Removes every watch of this monitor."""
        for wpath, token in list(self.unwatch_queue):
            self.unwatch(wpath, token)

    def watch(self, wpath: Path, token: Path,
              depth: Optional[int] = None) -> None:
        """Adds a watch on ``wpath`` (or ``@introduceDomain`` /
        ``@releaseDomain``, or ``@releaseDomain/<domid>`` for one domain).

        Any change at or below ``wpath`` (creation, removal, new value,
        new permissions) produces an event ``(path, token)``; one event
        also fires right away. Changes inside a transaction fire on commit.

        :param depth: only changes at most this many levels below
            ``wpath`` fire (0: ``wpath`` itself, 1: also its children).
            Sent to a daemon offering :attr:`~pyxs.Feature.WATCHDEPTH`;
            otherwise the monitor drops deeper events itself, after the
            daemon sent them. On a special path only depth 1 is allowed
            (events then name the domain, ``@releaseDomain/<domid>``).
        """
        wpath = validate_watch_path(wpath, "watch")
        token = validate_token(token, "watch")
        sent_depth, own_depth = _depth_field(self.client, wpath, depth)
        key = (wpath, token)
        if own_depth is not None and key not in self.unwatch_queue:
            self._depths[key] = own_depth
        router = self.client.router
        router.subscribe(token, self)
        try:
            self.client._call(requests.watch(wpath, token, sent_depth))
        except BaseException:
            if key not in self.unwatch_queue:
                self._depths.pop(key, None)
            if not any(t == token for _, t in self.unwatch_queue):
                router.unsubscribe(token, self)
            raise
        self.unwatch_queue.add(key)

    def unwatch(self, wpath: Path, token: Path) -> None:
        """Removes a watch added by :meth:`watch`.

        Events already queued stay in :attr:`events`.
        """
        wpath = validate_watch_path(wpath, "unwatch")
        token = validate_token(token, "unwatch")
        self.client._call(requests.unwatch(wpath, token))
        self.unwatch_queue.discard((wpath, token))
        self._depths.pop((wpath, token), None)
        if not any(t == token for _, t in self.unwatch_queue):
            self.client.router.unsubscribe(token, self)

    # -- delivery (called by whichever thread reads the connection) -------

    def deliver(self, event: Event) -> None:
        """Queues an event; called by the router."""
        if self._depths and too_deep(event[0], event[1], self.unwatch_queue,
                                     self._depths):
            return  # below the depth of a watch the daemon cannot limit
        self._put(event)

    def connection_lost(self, error: PyXSError) -> None:
        """Queues the end of the connection; called by the router."""
        if os.getpid() != self._pid:  # forked: the lock may be held
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._signal = None  # the parent's descriptors
        self._put(_Lost(error))

    def _put(self, item: Any) -> None:
        with self._lock:  # one byte per queued item (the invariant)
            self.events.put(item)
            if self._signal is not None:
                self._signal.wake()

    def fileno(self) -> int:
        """A descriptor that is readable while events are queued.

        For ``select``/``selectors``, like libxenstore's ``xs_fileno``.
        """
        with self._lock:
            if self._signal is None:
                signal = Wakeup()
                for _ in range(self.events.qsize()):  # owed for the queue
                    signal.wake()
                self._signal = signal
            return self._signal.fileno()

    def _close_signal(self) -> None:
        with self._lock:
            signal, self._signal = self._signal, None
        if signal is not None:
            signal.close()

    def _take(self, timeout: Optional[float]) -> Event:
        while True:
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("no watch event within %g s"
                                   % (timeout or 0)) from None
            if self._signal is not None:  # unlocked look: no contention
                with self._lock:  # with the deliverer when there is none
                    if self._signal is not None:
                        self._signal.consume()
            if not isinstance(item, _Lost):
                return item  # type: ignore[no-any-return]
            self._put(item)  # every later wait fails the same way
            raise ConnectionError(*item.error.args)

    def get(self, timeout: Optional[float] = None,
            unwatched: bool = False) -> Event:
        """Returns the next event, waiting up to ``timeout`` seconds.

        :raises pyxs.exceptions.TimeoutError: if none arrives in time.
        :raises pyxs.exceptions.ConnectionError: if the connection died.
        :raises ValueError: for a timeout that is negative, infinite or NaN
            (TypeError for one that is not a number).
        """
        if timeout is not None:
            timeout = validate_timeout(timeout, "Monitor.get")
        while True:
            event = self._take(timeout)
            if unwatched or is_watched(event, self.unwatch_queue):
                return event

    def wait(self, unwatched: bool = False,
             timeout: Optional[float] = None) -> Iterator[Event]:
        """Yields events for the watched paths, forever.

        :param unwatched: also yield events for watches already removed.
        :param timeout: raise :class:`pyxs.exceptions.TimeoutError` when no
            event arrives for this many seconds.
        """
        while True:
            yield self.get(timeout, unwatched)

