"""Write combining: one writer at a time, the others' requests ride along.

Pure state, no I/O; the threaded router holds its lock around each method.

A caller that has encoded a request *claims* the outbox: if nobody is
writing, it becomes the writer and writes its own bytes; if somebody is, its
bytes are queued and the writer sends them with its next write. Under load,
many requests share one system call and nobody waits for a write lock.

Invariants
----------
1. At most one writer: :attr:`Outbox.writing` is True from the claim that
   returned bytes until :meth:`Outbox.next_batch` returns None or
   :meth:`Outbox.abort` is called.
2. Queued bytes are whole requests, in the order they were claimed, and
   leave the queue only through the writer (``next_batch``) or ``abort``.
3. Once closed, nothing more is handed to a writer.
"""

from typing import List, Optional

__all__ = ["Outbox", "stream_intact"]


class Outbox:
    """Requests waiting for the current writer."""

    __slots__ = ("writing", "queued", "closed")

    def __init__(self) -> None:
        #: True while a writer holds the outbox (see invariant 1).
        self.writing = False
        #: Encoded requests waiting for the writer, in claim order.
        self.queued: List[bytes] = []
        #: Set when the connection ends; no writer is handed anything after.
        self.closed = False

    def claim(self, data: bytes) -> Optional[bytes]:
        """Returns ``data`` for the caller to write now, or None when a
        writer is busy and takes it along."""
        if self.writing:
            self.queued.append(data)
            return None
        self.writing = True
        return data

    def next_batch(self) -> Optional[bytes]:
        """The writer finished a write: the bytes queued meanwhile, as one
        write, or None (the writer is done: invariant 1)."""
        queued = self.queued
        if not queued or self.closed:
            self.writing = False
            return None
        data = queued[0] if len(queued) == 1 else b"".join(queued)
        queued.clear()
        return data

    def abort(self) -> bool:
        """The writer failed. Returns True when other requests were queued
        behind it, unwritten: the stream cannot be trusted then."""
        self.writing = False
        stranded = bool(self.queued)
        self.queued.clear()
        return stranded


def stream_intact(stranded: bool, unsent: int, untouched_size: int,
                  timed_out: bool, write_error: bool) -> bool:
    """After a failed write: may the connection go on?

    Yes when no other caller's request was left queued (``stranded``) and
    either an interrupt (not an error of the write itself) came between
    whole requests (``unsent == 0``), or the write timed out before any byte
    of the writer's own requests went out (``unsent`` equals their
    ``untouched_size``; -1 when the failed write held others' requests).
    Anything else leaves the stream desynchronised: close it.
    """
    if stranded:
        return False
    if timed_out:
        return unsent == untouched_size
    return unsent == 0 and not write_error
