"""pyxs's embedded XenStore daemon, pure Python.

It speaks the XenStore wire protocol over Unix sockets and behaves, as
socket clients see it, like Xen 4.17's C ``xenstored`` in dom0::

    from pyxs.server import XenStoreServer

    with XenStoreServer("/tmp/xs.sock") as server:
        ...  # point clients at server.socket_path
"""

from .core import Core
from .daemon import XenStoreServer
from .errors import XenStoreError
from .persist import StoreFileError
from .quotas import DEFAULT_QUOTAS, Quotas
from .store import Store

__all__ = ["XenStoreServer", "Core", "Store", "Quotas", "DEFAULT_QUOTAS",
           "XenStoreError", "StoreFileError"]
