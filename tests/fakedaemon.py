"""A scripted XenStore peer for fault injection.

Real daemons never send malformed or hostile replies, so these tests use a
fake one, and only for that. Each accepted connection is served by a
handler ``handler(conn, request_packet)`` that writes whatever bytes it
likes back.
"""

import os
import socket
import tempfile
import threading
from typing import Callable, List, Optional

from pyxs._internal import NUL, Op, Packet, PacketDecoder

Handler = Callable[["FakeConnection", Packet], None]


class FakeConnection:
    """One client connection of the fake daemon."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: List[Packet] = []

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, request: Packet, payload: bytes, op: Optional[int] = None,
              rq_id: Optional[int] = None, tx_id: Optional[int] = None
              ) -> None:
        self.send_raw(bytes(Packet(
            request.op if op is None else op, payload,
            request.rq_id if rq_id is None else rq_id,
            request.tx_id if tx_id is None else tx_id)))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def honest(conn: FakeConnection, request: Packet) -> None:
    """Answers like a tiny daemon: READ gives b"value", the rest OK."""
    if request.op == Op.READ:
        conn.reply(request, b"value")
    elif request.op == Op.WATCH:
        conn.reply(request, b"OK" + NUL)
        path, token = request.payload.split(NUL)[:2]
        conn.reply(request, path + NUL + token + NUL, op=Op.WATCH_EVENT,
                   rq_id=0, tx_id=0)
    else:
        conn.reply(request, b"OK" + NUL)


class FakeDaemon:
    """Listens on a Unix socket in a temporary directory."""

    def __init__(self, handler: Handler = honest) -> None:
        self.handler = handler
        self.directory = tempfile.mkdtemp(prefix="pyxs-fake-")
        self.socket_path = os.path.join(self.directory, "socket")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(8)
        self.connections: List[FakeConnection] = []
        self.threads: List[threading.Thread] = []
        self.accepted = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = FakeConnection(sock)
            self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,),
                                      daemon=True)
            self.threads.append(thread)
            thread.start()
            self.accepted.set()

    def _serve(self, conn: FakeConnection) -> None:
        decoder = PacketDecoder()
        while True:
            try:
                data = conn.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            for packet in decoder.feed(data):
                conn.received.append(packet)
                try:
                    self.handler(conn, packet)
                except OSError:
                    return

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(5)
        for conn in self.connections:
            conn.close()
        for thread in self.threads:
            thread.join(5)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        os.rmdir(self.directory)

    def __enter__(self) -> "FakeDaemon":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
