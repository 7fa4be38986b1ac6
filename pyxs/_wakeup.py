"""A socket pair that wakes a thread blocked in poll(): write one end,
poll the other.

The one piece of I/O the router's core needs, in one small class, after
concurrent.futures' own wake-up pipe.
"""

import socket

__all__ = ["Wakeup"]


class Wakeup:
    """Both ends non-blocking; every method is safe after :meth:`close`."""

    __slots__ = ("_reader", "_writer")

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        """The end to poll for POLLIN (-1 once closed)."""
        return self._reader.fileno()

    def wake(self) -> None:
        """Makes the reading end readable (a full buffer is readable too)."""
        try:
            self._writer.send(b"x")
        except OSError:  # full, or closed: readable either way, or gone
            pass

    def consume(self) -> None:
        """Takes one wake-up back (one byte per queued item)."""
        try:
            self._reader.recv(1)
        except OSError:
            pass

    def clear(self) -> None:
        """Takes back every wake-up sent so far."""
        try:
            while self._reader.recv(512):
                pass
        except OSError:  # drained (EAGAIN), or closed
            pass

    def close(self) -> None:
        """Closes both ends."""
        self._reader.close()
        self._writer.close()
