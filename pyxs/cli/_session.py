"""The connection a ``pyxs`` command uses: a quick one, or a full Client.

One-request commands (``read``, ``write``, ``exists``, ``rm``, ``mkdir``)
send their requests in this thread over a plain
:mod:`pyxs.connection` with pyxs's own codec (:mod:`pyxs._internal`) and
reply checks (:mod:`pyxs._replies`): importing :class:`pyxs.Client`, its
router thread and everything they need would cost more start-up time than
the whole command may take. Every other command, and any command once it
needs more, uses a :class:`pyxs.Client`.
"""

from typing import Any, Dict, Optional

__all__ = ["Session"]


class Session:
    """The daemon a command talks to, connected on first use."""

    def __init__(self, args: Dict[str, Any]) -> None:
        self.args = args
        self.timeout: Optional[float] = args["timeout"]
        self._client: Any = None
        self._connection: Any = None
        self._rq_id = 0

    # -- the full client ----------------------------------------------------

    @property
    def client(self) -> Any:
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

    def _connect(self) -> Any:
        if self._connection is None:
            from ..connection import (
                UnixSocketConnection,
                XenBusConnection,
                default_xenbus_path,
            )
            socket, xenbus = self.args["socket"], self.args["xenbus"]
            if socket is None and xenbus is not None:
                connection: Any = XenBusConnection(
                    xenbus or default_xenbus_path())
            else:
                connection = UnixSocketConnection(socket)
            connection.connect(self.timeout)
            self._connection = connection
        return self._connection

    def request(self, op: int, payload: bytes, path: Any = None) -> bytes:
        """Sends one request and returns its reply's payload; an ERROR
        reply raises the daemon's error, as :class:`pyxs.Client` does."""
        from .._internal import Packet
        from .._replies import error_reply
        from ..exceptions import PyXSError
        try:
            reply = self._exchange(Packet(op, payload, self._next_id(), 0))
        except PyXSError as exc:
            if exc.op is None:
                from .._internal import op_name
                exc.with_context(op_name(op), path)
            raise
        if reply.op == _error_op():
            raise error_reply(reply.payload, op, path)
        return bytes(reply.payload)

    def _next_id(self) -> int:
        self._rq_id += 1
        return self._rq_id

    def _exchange(self, packet: Any) -> Any:
        import select
        import time

        from .._pending import check_reply
        from ..exceptions import TimeoutError
        connection = self._connect()
        connection.send(packet)
        deadline = None if self.timeout is None else \
            time.monotonic() + self.timeout
        while True:
            for reply in connection.parse() if connection.has_unparsed \
                    else ():
                if reply.rq_id == packet.rq_id:
                    refusal = check_reply(packet.op, packet.tx_id, reply)
                    if refusal is not None:
                        raise refusal
                    return reply
            left = None if deadline is None else \
                max(0.0, deadline - time.monotonic())
            if not select.select([connection.fileno()], [], [], left)[0]:
                raise TimeoutError("no reply within %g s"
                                   % (self.timeout or 0))
            connection.fill()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        connection, self._connection = self._connection, None
        if client is not None:
            client.close()
        if connection is not None:
            connection.close()


def _error_op() -> int:
    from .._ops import Op
    return int(Op.ERROR)
