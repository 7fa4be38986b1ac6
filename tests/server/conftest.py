"""Fixtures for the embedded daemon tests: servers and raw clients."""

from typing import Callable, Iterator

import pytest

from pyxs.server import XenStoreServer

from .rawclient import RawClient


@pytest.fixture
def server() -> Iterator[XenStoreServer]:
    """A running embedded daemon with no socket file."""
    with XenStoreServer() as running:
        yield running


@pytest.fixture
def connect(server: XenStoreServer) -> Iterator[Callable[..., RawClient]]:
    """Opens raw clients (``connect(domid=0)``) and closes them afterwards."""
    opened = []

    def open_client(domid: int = 0) -> RawClient:
        client = RawClient(server.socketpair(domid))
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def dom0(connect) -> RawClient:
    """A privileged raw client."""
    return connect(0)
