"""pyxs: a pure-Python XenStore client.

::

    import pyxs

    with pyxs.Client() as c:
        c.write(b"/vm/1/state", b"running")

    with pyxs.monitor() as m:
        m.watch(b"/vm/1/state", b"state")
        print(next(m.wait()))
"""

from typing import Any

from .client import Client
from .exceptions import (
    ConnectionError,
    InvalidOperation,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    InvalidToken,
    PyXSError,
    TimeoutError,
    UnexpectedPacket,
)
from .monitor import Monitor
from .recipes import TransactionConflict, run_transaction, wait_for
from .router import Router, RVar

__all__ = ["Client", "Monitor", "Router", "RVar", "monitor",
           "run_transaction", "wait_for", "PyXSError", "ConnectionError",
           "UnexpectedPacket", "InvalidOperation", "InvalidPayload",
           "InvalidPath", "InvalidPermission", "InvalidToken",
           "TimeoutError", "TransactionConflict", "__version__"]

__version__ = "0.5.0"


def monitor(*args: Any, **kwargs: Any) -> Monitor:
    """A :class:`Monitor` on a new client; arguments go to :class:`Client`.

    Use it as a context manager: it connects on entry and closes the
    connection on exit.
    """
    return Client(*args, **kwargs).monitor()
