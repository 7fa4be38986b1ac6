"""pyxs: a pure-Python XenStore client.

::

    import pyxs

    with pyxs.Client() as c:
        c.write(b"/vm/1/state", b"running")

    with pyxs.monitor() as m:
        m.watch(b"/vm/1/state", b"state")
        print(next(m.wait()))

The names below are imported on first use (PEP 562), so ``import pyxs``
and the ``pyxs`` command start fast; ``from pyxs import Client`` works as
it always did.
"""

import importlib
import sys
import types

# ``typing`` costs start-up time: mypy reads any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from typing import Any, Dict, List, Tuple

    from ._compat import xs
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

    #: pyxs 0.4's ``pyxs.Error``: PyXSError itself.
    Error = PyXSError

__all__ = ["Client", "Monitor", "Router", "RVar", "monitor",
           "run_transaction", "wait_for", "PyXSError", "ConnectionError",
           "UnexpectedPacket", "InvalidOperation", "InvalidPayload",
           "InvalidPath", "InvalidPermission", "InvalidToken",
           "TimeoutError", "TransactionConflict", "Feature",
           "UnsupportedOperation", "xs", "Error", "__version__"]

__version__ = "0.5.0"

# Where each lazily imported name lives: (module, attribute).
_LAZY: "Dict[str, Tuple[str, str]]" = {
    "Client": (".client", "Client"),
    "Monitor": (".monitor", "Monitor"),
    "Router": (".router", "Router"),
    "RVar": (".router", "RVar"),
    "run_transaction": (".recipes", "run_transaction"),
    "wait_for": (".recipes", "wait_for"),
    "TransactionConflict": (".recipes", "TransactionConflict"),
    "Feature": ("._features", "Feature"),
    # pyxs 0.4 exported the binding here.
    "xs": ("._compat", "xs"),
    # pyxs 0.4's ``pyxs.Error`` was PyXSError itself, which catches every
    # pyxs error (``pyxs._compat.Error`` is the binding's RuntimeError).
    "Error": (".exceptions", "PyXSError"),
}
_LAZY.update((name, (".exceptions", name)) for name in (
    "PyXSError", "ConnectionError", "UnexpectedPacket", "InvalidOperation",
    "InvalidPayload", "InvalidPath", "InvalidPermission", "InvalidToken",
    "TimeoutError", "UnsupportedOperation"))


def __getattr__(name: str) -> "Any":
    """Imports a public name on first use and keeps it (PEP 562)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError("module 'pyxs' has no attribute %r"
                             % name) from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> "List[str]":
    return sorted(set(__all__) | {name for name in globals()
                                  if name.startswith("__")})


def monitor(*args: "Any", **kwargs: "Any") -> "Monitor":
    """A :class:`Monitor` on a new client; arguments go to :class:`Client`.

    Use it as a context manager: it connects on entry and closes the
    connection on exit.
    """
    from .client import Client
    return Client(*args, **kwargs).monitor()


class _Package(types.ModuleType):
    """``pyxs.monitor`` stays the function above when the submodule
    :mod:`pyxs.monitor` is imported (which sets the package's attribute of
    that name): eagerly importing it first, as pyxs 0.4 did, would cost
    start-up time."""

    @property
    def monitor(self) -> "Any":
        return _monitor

    @monitor.setter
    def monitor(self, value: "Any") -> None:
        pass  # the submodule stays reachable as sys.modules["pyxs.monitor"]


_monitor = monitor
sys.modules[__name__].__class__ = _Package
