"""pytest fixtures that hand tests a real XenStore daemon and client.

Enable it in your ``conftest.py``::

    pytest_plugins = ["pyxs.testing.pytest_plugin"]

    def test_state(xenstore_client):
        xenstore_client.write(b"/vm/1/state", b"running")
        assert xenstore_client.read(b"/vm/1/state") == b"running"

Each test gets a fresh daemon in its own temporary directory. The kind is
chosen with ``--xenstore-daemon`` (``xenstored``, ``oxenstored`` or
``embedded``; default ``embedded``, which needs nothing but Python) or the
``PYXS_TEST_DAEMON`` environment variable; the Xen release of Xen's daemons
with ``--xen`` (one of :data:`pyxs.testing.XEN_RELEASES`; default
:data:`pyxs.testing.DEFAULT_RELEASE`) or ``PYXS_TEST_XEN``. For the
embedded daemon a release is passed on, to make it behave as that release.
"""

import os
from typing import Any, Iterator, Optional

import pytest

from . import DAEMON_KINDS, XEN_RELEASES, XenStoreDaemon


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("pyxs")
    group.addoption("--xenstore-daemon", choices=DAEMON_KINDS, default=None,
                    help="the XenStore daemon pyxs.testing fixtures start")
    group.addoption("--xen", choices=XEN_RELEASES, default=None,
                    metavar="RELEASE",
                    help="the Xen release of those daemons (one of %s)"
                    % ", ".join(XEN_RELEASES))


def xen_release(config: Any) -> Optional[str]:
    """The release chosen with ``--xen`` or ``PYXS_TEST_XEN``, if any."""
    release = config.getoption("--xen") or os.environ.get("PYXS_TEST_XEN")
    if release and release not in XEN_RELEASES:
        raise pytest.UsageError("PYXS_TEST_XEN=%s: choose one of %s" % (
            release, ", ".join(XEN_RELEASES)))
    return release or None


@pytest.fixture
def xenstore_daemon(request: Any) -> Iterator[XenStoreDaemon]:
    """A fresh, running :class:`~pyxs.testing.XenStoreDaemon`."""
    kind = (request.config.getoption("--xenstore-daemon") or
            os.environ.get("PYXS_TEST_DAEMON") or "embedded")
    with XenStoreDaemon(kind, xen=xen_release(request.config)) as daemon:
        yield daemon


@pytest.fixture
def xenstore_client(xenstore_daemon: XenStoreDaemon) -> Iterator[Any]:
    """A connected :class:`pyxs.Client` on :func:`xenstore_daemon`."""
    with xenstore_daemon.client(timeout=30) as client:
        yield client
