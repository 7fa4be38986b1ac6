"""RVar: the threaded router's reply slot, a minimal future.

States: ``WAITING`` -> ``DONE`` (the reply, or an error, is in), or
``WAITING`` -> ``READER`` -> ``DONE`` (the waiter was handed the reading
role, see :mod:`pyxs._role`, and then read its own reply). The slot's lock
is held from creation until the slot leaves ``WAITING``; releasing it wakes
the one waiting thread, which tells from :attr:`RVar.state` why it woke.
Once ``DONE`` the lock stays free, so any number of threads may wait.
"""

import threading
from typing import TYPE_CHECKING, Any, Optional

from .exceptions import TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from .router import Router

__all__ = ["RVar", "WAITING", "DONE", "READER"]

WAITING = 0  #: no reply yet
DONE = 1     #: a result or an error is stored
READER = 2   #: the waiter holds the reading role (its reply is not in)

_new_lock = threading.Lock


class RVar:
    """A slot for one reply: one writer, any number of waiters.

    Behaves like a minimal :class:`concurrent.futures.Future`: :meth:`get`
    blocks until :meth:`set` or :meth:`set_exception` was called, or the
    timeout expires.
    """

    __slots__ = ("_ready", "state", "_value", "_error", "rq_id", "router")

    def __init__(self, router: "Optional[Router]" = None) -> None:
        self._ready = ready = _new_lock()
        ready.acquire()
        self.state = WAITING
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self.rq_id: Optional[int] = None
        #: The router that sent the request: get() then reads the
        #: connection itself when nobody else does.
        self.router = router

    def set(self, value: Any) -> None:
        """Stores the result and wakes the waiters."""
        self._value = value
        self._finish()

    def set_exception(self, error: BaseException) -> None:
        """Stores an error that :meth:`get` will raise."""
        self._error = error
        self._finish()

    def _finish(self) -> None:
        if self.state != DONE:
            self.state = DONE
            self._ready.release()

    def done(self) -> bool:
        """True once a result or an error is stored."""
        return self.state == DONE

    def result(self) -> Any:
        """The stored result (raising the stored error); for a done slot."""
        if self._error is not None:
            raise self._error
        return self._value

    def get(self, timeout: Optional[float] = None) -> Any:
        """Waits for the result; raises the stored error, or
        :class:`pyxs.exceptions.TimeoutError` after ``timeout`` seconds."""
        if self.state != DONE:
            router = self.router
            if router is not None:
                router.wait(self, timeout)
            elif not self._ready.acquire(True, -1 if timeout is None
                                         else max(timeout, 0)):
                raise TimeoutError("no reply within %g s" % (timeout or 0))
            else:
                self._ready.release()  # let any other waiter through
        return self.result()

    def __repr__(self) -> str:
        return "<RVar rq_id=%s %s>" % (
            self.rq_id, ("waiting", "done", "reading")[self.state])
