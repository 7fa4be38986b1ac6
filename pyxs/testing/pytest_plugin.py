"""pytest fixtures that hand tests a real XenStore daemon and client.

Enable it in your ``conftest.py``::

    pytest_plugins = ["pyxs.testing.pytest_plugin"]

    def test_state(xenstore_client):
        xenstore_client.write(b"/vm/1/state", b"running")
        assert xenstore_client.read(b"/vm/1/state") == b"running"

Each test gets a fresh daemon in its own temporary directory. The kind is
chosen with ``--xenstore-daemon`` (``xenstored``, ``oxenstored`` or
``embedded``; default ``embedded``, which needs nothing but Python) or the
``PYXS_TEST_DAEMON`` environment variable.
"""

import os
from typing import Any, Iterator

import pytest

from . import DAEMON_KINDS, XenStoreDaemon


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("pyxs")
    group.addoption("--xenstore-daemon", choices=DAEMON_KINDS, default=None,
                    help="the XenStore daemon pyxs.testing fixtures start")


@pytest.fixture
def xenstore_daemon(request: Any) -> Iterator[XenStoreDaemon]:
    """A fresh, running :class:`~pyxs.testing.XenStoreDaemon`."""
    kind = (request.config.getoption("--xenstore-daemon") or
            os.environ.get("PYXS_TEST_DAEMON") or "embedded")
    with XenStoreDaemon(kind) as daemon:
        yield daemon


@pytest.fixture
def xenstore_client(xenstore_daemon: XenStoreDaemon) -> Iterator[Any]:
    """A connected :class:`pyxs.Client` on :func:`xenstore_daemon`."""
    with xenstore_daemon.client(timeout=30) as client:
        yield client
