"""In-process clients of the embedded daemon, for tests.

:func:`inprocess_client` connects a :class:`pyxs.Client` to a running
:class:`pyxs.server.XenStoreServer` over a socketpair (no socket file).
It lives on the testing side so that :mod:`pyxs.server` never imports the
client: the server only hands out connected sockets
(:meth:`~pyxs.server.XenStoreServer.socketpair`).
"""

from typing import Any

from ..client import Client
from ..connection import UnixSocketConnection
from ..router import Router
from ..server import XenStoreServer

__all__ = ["inprocess_client"]


def inprocess_client(server: XenStoreServer, domid: int = 0,
                     **kwargs: Any) -> Client:
    """A new, not yet connected :class:`pyxs.Client` talking to ``server``
    in-process and acting as ``domid``; ``kwargs`` go to the Client."""
    connection = UnixSocketConnection.from_socket(
        server.socketpair(domid), "<in-process dom%d>" % domid)
    return Client(router=Router(connection), **kwargs)
