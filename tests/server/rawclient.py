"""A tiny raw-packet XenStore client for the daemon tests.

It speaks bytes on a socket with :mod:`pyxs._internal` and nothing else, so
the embedded daemon is tested independently of pyxs's real client.
"""

import socket
from typing import List, Optional, Set, Tuple, Union

from pyxs._internal import HEADER, Op, Packet, PacketDecoder

Event = Tuple[bytes, bytes]


class RawClient:
    """Sends requests and collects replies and watch events."""

    def __init__(self, target: Union[str, socket.socket],
                 timeout: float = 5.0) -> None:
        if isinstance(target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(target)
        else:
            sock = target
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.decoder = PacketDecoder()
        self.rq_id = 0
        self.replies: List[Packet] = []
        self.events: List[Event] = []

    def close(self) -> None:
        """Closes the socket."""
        self.sock.close()

    def send(self, op: int, payload: bytes = b"", tx_id: int = 0) -> int:
        """Sends one request (any payload, even an invalid one)."""
        self.rq_id += 1
        self.sock.sendall(HEADER.pack(op, self.rq_id, tx_id, len(payload))
                          + payload)
        return self.rq_id

    def _pump(self, timeout: Optional[float]) -> bool:
        """Reads once; False on timeout; raises EOFError on hang-up."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not data:
            raise EOFError("daemon closed the connection")
        for packet in self.decoder.feed(data):
            if packet.op == Op.WATCH_EVENT:
                path, token = packet.payload.split(b"\x00")[:2]
                self.events.append((path, token))
            else:
                self.replies.append(packet)
        return True

    def reply(self, rq_id: int) -> Packet:
        """Waits for the reply to ``rq_id``."""
        while True:
            for packet in self.replies:
                if packet.rq_id == rq_id:
                    self.replies.remove(packet)
                    return packet
            if not self._pump(self.timeout):
                raise TimeoutError("no reply to request %d" % rq_id)

    def request(self, op: int, payload: bytes = b"",
                tx_id: int = 0) -> Packet:
        """Sends a request and waits for its reply."""
        return self.reply(self.send(op, payload, tx_id))

    def call(self, op: int, payload: bytes = b"", tx_id: int = 0) -> bytes:
        """The reply payload, or ``b"E<NAME>"`` for an error reply."""
        packet = self.request(op, payload, tx_id)
        if packet.op == Op.ERROR:
            return packet.payload.rstrip(b"\x00")
        return packet.payload

    def sync(self) -> None:
        """Round-trips a request, so every earlier event has arrived.

        The daemon answers in order and queues a change's events before the
        reply to the next request, so nothing is left in flight afterwards.
        """
        self.request(Op.GET_DOMAIN_PATH, b"0\x00")

    def take_events(self) -> Set[Event]:
        """Returns (and forgets) the events received so far, as a set."""
        self.sync()
        events, self.events = set(self.events), []
        return events

    def wait_event(self) -> Event:
        """Waits for the next event."""
        while not self.events:
            if not self._pump(self.timeout):
                raise TimeoutError("no watch event")
        return self.events.pop(0)
