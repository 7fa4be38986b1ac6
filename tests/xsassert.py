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
def ctrl_c_once(ready: threading.Event) -> Iterator[None]:
    """Presses Ctrl-C once in the main thread as soon as ``ready`` is set.

    A SIGINT that lands just before the thread blocks is only noticed when
    the wait ends (CPython checks for signals between bytecodes and on
    EINTR), so the signal repeats until a handler, which raises
    KeyboardInterrupt once as a first Ctrl-C does, has run.
    """
    main = threading.main_thread()
    assert threading.current_thread() is main
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    def interrupt() -> None:
        if ready.wait(BOUND):
            while not interrupted.wait(0.01):
                signal.pthread_kill(main.ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    killer = threading.Thread(target=interrupt)
    try:
        killer.start()
        yield
    finally:
        interrupted.set()
        killer.join()
        signal.signal(signal.SIGINT, previous)


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

        def send_bytes(data: bytes, *deadline: float) -> None:
            original(data, *deadline)
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
