"""Helpers for the behavioural tests: proving an absence without sleeping."""

import itertools
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple

from pyxs._internal import HEADER

_markers = itertools.count()

#: Generous bound on waits that should end at once; only turns a hang into
#: a failure.
BOUND = 10

MARKER_PATH = b"/pyxs-test-marker"


def events_before_marker(monitor: Any) -> List[Any]:
    """Every event already queued for ``monitor``'s connection.

    Sets a watch with a fresh token: the daemon sends its immediate event
    after everything it queued for the connection before, so the events
    taken until the marker are all there were.
    """
    token = b"marker-%d" % next(_markers)
    monitor.watch(MARKER_PATH, token)
    seen = []
    while True:
        event = monitor.get(BOUND, unwatched=True)
        if event.token == token:
            break
        seen.append(event)
    monitor.unwatch(MARKER_PATH, token)
    return seen


@contextmanager
def stopped(daemon: Any) -> Iterator[None]:
    """The daemon frozen with SIGSTOP; SIGCONT on the way out."""
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if daemon.running:
            os.kill(daemon.pid, signal.SIGCONT)


class SendLog:
    """Records the requests a client's connection writes.

    ``ops`` are their ops, ``requests`` their ``(op, payload)`` pairs;
    ``wait_for(n)`` blocks until ``n`` requests were written.
    """

    def __init__(self, client: Any) -> None:
        self.ops: List[int] = []
        self.requests: List[Tuple[int, bytes]] = []
        self._cond = threading.Condition()
        connection = client.router.connection
        original = connection.send_bytes

        def send_bytes(data: bytes) -> None:
            original(data)
            with self._cond:
                offset = 0  # one write may carry several requests
                while offset < len(data):
                    op, _, _, size = HEADER.unpack_from(data, offset)
                    self.ops.append(op)
                    start = offset + HEADER.size
                    self.requests.append((op, bytes(data[start:start + size])))
                    offset = start + size
                self._cond.notify_all()

        connection.send_bytes = send_bytes

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.ops) >= count,
                                       BOUND), \
                "only %d of %d requests sent" % (len(self.ops), count)
