"""The cache shared by every way pyxs.testing provisions Xen.

Invariants: everything fetched or built lives under :func:`cache_dir`; an
entry appears there complete or not at all (it is made in a temporary
directory beside it and renamed into place), and whoever fills an entry
holds its lock file (``<entry>.lock``, an exclusive ``flock``), so parallel
test processes wait for one another instead of fetching or building twice.
"""

import contextlib
import fcntl
import hashlib
import os
from typing import Iterator

__all__ = ["ProvisionError", "cache_dir", "locked", "file_digest"]


class ProvisionError(RuntimeError):
    """Xen's daemons cannot be found or fetched; the message says why."""


def cache_dir() -> str:
    """Where fetched packages, built daemons and the built stub live."""
    root = os.environ.get("PYXS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "pyxs")
    os.makedirs(root, exist_ok=True)
    return root


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Holds the exclusive lock of the cache entry ``path``."""
    with open(path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def file_digest(path: str) -> str:
    """The SHA-256 of a file's content, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
