"""The connection a ``pyxs`` command uses: a quick one, or a full Client.

One-request commands (``read``, ``write``, ``exists``, ``rm``, ``mkdir``)
send their requests in this thread over a plain Unix socket with pyxs's
own codec (:mod:`pyxs._internal`) and reply checks (:mod:`pyxs._replies`,
:mod:`pyxs._pending`): importing :class:`pyxs.Client`, its
router thread and everything they need would cost more start-up time than
the whole command may take. Every other command, and any command once it
needs more, uses a :class:`pyxs.Client`.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

__all__ = ["Session"]


class Session:
    """The daemon a command talks to, connected on first use."""

    def __init__(self, args: "Dict[str, Any]") -> None:
        self.args = args
        self.timeout: Optional[float] = args["timeout"]
        self._client: Any = None
        self._connection: Any = None   # only when _slow_connect made one
        self._socket: Any = None
        self.path = ""
        self._rq_id = 0

    # -- the full client ----------------------------------------------------

    @property
    def client(self) -> "Any":
        """A connected :class:`pyxs.Client`."""
        if self._client is None:
            import logging

            from ..client import Client
            from ..connection import default_xenbus_path
            log = logging.getLogger("pyxs.cli")
            socket, xenbus = self.args["socket"], self.args["xenbus"]
            if socket is None and xenbus is not None:
                device = xenbus or default_xenbus_path()
                log.debug("using XenBus device %s", device)
                client = Client(xen_bus_path=device, timeout=self.timeout)
            else:
                client = Client(unix_socket_path=socket,
                                timeout=self.timeout)
            log.debug("connecting: %r", client)
            client.connect()
            self._client = client
        return self._client

    # -- quick requests -----------------------------------------------------

    def _connect(self) -> "Any":
        """A connected Unix socket (``_socket``: ``socket.py`` costs more
        to import than this whole command may take). Any failure goes
        through :class:`pyxs.connection.UnixSocketConnection` instead, for
        its error messages and its connect timeout."""
        if self._socket is None:
            import _socket
            import os
            path = self.args["socket"] or os.environ.get("XENSTORED_PATH") \
                or os.path.join(os.environ.get("XENSTORED_RUNDIR") or
                                "/var/run/xenstored", "socket")
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.connect(path)
                sock.setblocking(True)
            except OSError:
                sock.close()
                sock = self._slow_connect(path)
            self._socket = sock
            self.path = path
        return self._socket

    def _slow_connect(self, path: str) -> "Any":
        from ..connection import UnixSocketConnection
        connection = UnixSocketConnection(path)
        connection.connect(self.timeout)
        self._connection = connection
        return connection._connected_socket()

    def request(self, op: int, payload: bytes, path: "Any" = None) -> bytes:
        """Sends one request and returns its reply's payload; an ERROR
        reply raises the daemon's error, as :class:`pyxs.Client` does."""
        from .._internal import Packet, op_name
        from .._ops import Op
        from .._replies import error_reply
        from ..exceptions import PyXSError
        if self.args["xenbus"] is None:
            self._connect()  # its errors name no request, as Client's
        try:
            if self.args["xenbus"] is not None:  # a device: the full client
                reply = self.client.router.call(op, 0, payload, self.timeout)
            else:
                reply = self._exchange(Packet(op, payload, self._next_id(),
                                              0))
        except PyXSError as exc:
            if exc.op is None:
                exc.with_context(op_name(op), path)
            raise
        if reply.op == Op.ERROR:
            raise error_reply(reply.payload, op, path)
        return bytes(reply.payload)

    def _next_id(self) -> int:
        self._rq_id += 1
        return self._rq_id

    def _exchange(self, packet: "Any") -> "Any":
        import select
        import time

        from .._internal import PacketDecoder
        from .._replies import check_reply
        from ..exceptions import ConnectionError, PyXSError, TimeoutError
        sock = self._connect()
        deadline = None if self.timeout is None else \
            time.monotonic() + self.timeout
        decoder = PacketDecoder()
        try:
            sock.sendall(bytes(packet))
            while True:
                left = None if deadline is None else \
                    max(0.0, deadline - time.monotonic())
                if not select.select([sock], [], [], left)[0]:
                    raise TimeoutError("no reply within %g s"
                                       % (self.timeout or 0))
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("%s closed the connection"
                                          % self.path)
                for reply in decoder.feed(data):
                    if reply.rq_id == packet.rq_id:
                        refusal = check_reply(packet.op, packet.tx_id, reply)
                        if refusal is not None:
                            raise refusal
                        return reply
        except PyXSError:
            raise
        except OSError as exc:
            raise ConnectionError("talking to %s failed: %s" % (
                self.path, exc.strerror or exc)) from exc

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info: "Any") -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        connection, self._connection = self._connection, None
        sock, self._socket = self._socket, None
        if client is not None:
            client.close()
        if connection is not None:
            connection.close()
        elif sock is not None:
            sock.close()
