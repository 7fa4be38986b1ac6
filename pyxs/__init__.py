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

from ._compat import xs  # pyxs 0.4 exported it here
from ._features import Feature
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
    UnsupportedOperation,
)
from .monitor import Monitor
from .recipes import TransactionConflict, run_transaction, wait_for
from .router import Router, RVar

#: pyxs 0.4's ``pyxs.Error``: there it was PyXSError itself, which catches
#: every pyxs error (``pyxs._compat.Error`` is the binding's RuntimeError).
Error = PyXSError

__all__ = ["Client", "Monitor", "Router", "RVar", "monitor",
           "run_transaction", "wait_for", "PyXSError", "ConnectionError",
           "UnexpectedPacket", "InvalidOperation", "InvalidPayload",
           "InvalidPath", "InvalidPermission", "InvalidToken",
           "TimeoutError", "TransactionConflict", "Feature",
           "UnsupportedOperation", "xs", "Error", "__version__"]

__version__ = "0.5.0"


def monitor(*args: Any, **kwargs: Any) -> Monitor:
    """A :class:`Monitor` on a new client; arguments go to :class:`Client`.

    Use it as a context manager: it connects on entry and closes the
    connection on exit.
    """
    return Client(*args, **kwargs).monitor()
