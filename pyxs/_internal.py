"""The pure XenStore protocol layer: operations, packets and framing.

Nothing here does I/O. Bytes go in, :class:`Packet` objects come out (and
the other way round), so every corner of the wire format is testable alone.
"""

import functools
import itertools
import struct

from ._ops import Op, op_name
from ._startup import named_tuple
from .exceptions import InvalidOperation, InvalidPayload, UnexpectedPacket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, NamedTuple, Optional, Union
else:
    NamedTuple = object  # named_tuple() makes the classes NamedTuples

__all__ = ["NUL", "Op", "Packet", "Event", "PacketDecoder", "HEADER",
           "PAYLOAD_MAX", "op_name", "decode_header", "encode", "next_rq_id",
           "split_names", "new_event"]

#: The field separator of XenStore payloads.
NUL = b"\x00"

#: Largest payload either side may send (``XENSTORE_PAYLOAD_MAX``).
PAYLOAD_MAX = 4096

#: Largest payload accepted for the ops a :class:`PacketDecoder` is told
#: may exceed :data:`PAYLOAD_MAX`.
OVERSIZE_MAX = 1 << 24

#: ``type, req_id, tx_id, len`` as four host-order uint32.
HEADER = struct.Struct("=IIII")

Operations = Op  # pyxs 0.4's other name for it

_KNOWN_OPS = frozenset(Op)

@named_tuple
class Event(NamedTuple):
    """A watch notification: the path that changed and the watch's token."""

    path: bytes
    token: bytes


@named_tuple
class _Header(NamedTuple):
    op: int
    rq_id: int
    tx_id: int
    size: int


@named_tuple
class _PacketFields(NamedTuple):
    op: int
    rq_id: int
    tx_id: int
    size: int
    payload: bytes


class Packet(_PacketFields):
    """A message to or from XenStore.

    :param op: an item of :data:`Op`.
    :param payload: the message body, at most 4096 bytes.
    :param rq_id: request id; XenStore echoes it back in the reply.
    :param tx_id: transaction id, 0 outside transactions.
    """

    __slots__ = ()

    def __new__(cls, op: int, payload: "Union[bytes, str]", rq_id: int = 0,
                tx_id: "Optional[int]" = None) -> "Packet":
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if op not in _KNOWN_OPS:
            raise InvalidOperation(op)
        if len(payload) > PAYLOAD_MAX:
            raise InvalidPayload(payload, op=op)
        return tuple.__new__(cls, (op, rq_id or 0, tx_id or 0,
                                   len(payload), payload))

    def __bytes__(self) -> bytes:
        return HEADER.pack(self.op, self.rq_id, self.tx_id,
                           self.size) + self.payload

    def __repr__(self) -> str:
        shown = self.payload if self.size <= 64 else \
            self.payload[:64] + b"..."
        return "Packet(%s, %r, rq_id=%d, tx_id=%d)" % (
            op_name(self.op), shown, self.rq_id, self.tx_id)

    def fields(self) -> "List[bytes]":
        """Splits a NUL-separated payload, dropping the final terminator."""
        payload = self.payload
        if payload.endswith(NUL):
            payload = payload[:-1]
        return payload.split(NUL) if payload else []


# Builds a Packet from its five fields without Packet.__new__'s checks, in
# one C call: the decoder's way, for bytes that passed its own checks.
_new_packet = functools.partial(tuple.__new__, Packet)
#: The same for events: ``new_event((path, token))``.
new_event = functools.partial(tuple.__new__, Event)

_unpack_header = HEADER.unpack_from
_HEADER_SIZE = HEADER.size

def split_names(payload: bytes) -> "List[bytes]":
    """The names in a NUL-separated list (DIRECTORY, GET_PERMS replies),
    whatever NULs end it."""
    payload = payload.rstrip(NUL)
    return payload.split(NUL) if payload else []


_rq_ids = itertools.count(1)


def next_rq_id() -> int:
    """A fresh request id (pyxs 0.4 API; the router assigns its own)."""
    return next(_rq_ids) % 2 ** 32 or next(_rq_ids) % 2 ** 32


def encode(op: int, rq_id: int, tx_id: int, payload: bytes) -> bytes:
    """Frames an already validated payload; the fast path of sending."""
    return HEADER.pack(op, rq_id, tx_id, len(payload)) + payload


def decode_header(data: bytes) -> "_Header":
    """Parses a 16-byte header, refusing lengths over the protocol limit."""
    header = _Header(*HEADER.unpack(data))
    if header.size > PAYLOAD_MAX:
        raise UnexpectedPacket("packet header claims %d payload bytes, more "
                               "than the %d allowed" % (header.size,
                                                        PAYLOAD_MAX))
    return header


class PacketDecoder:
    """Turns a stream of bytes into packets; input may arrive in any pieces.

    >>> d = PacketDecoder()
    >>> d.feed(bytes(Packet(Op.READ, b"x", rq_id=1))[:5])
    []
    """

    __slots__ = ("_buffer", "_oversize_ops")

    def __init__(self, oversize_ops: "Iterable[int]" = ()) -> None:
        self._buffer = bytearray()
        # Ops whose packets may carry up to OVERSIZE_MAX bytes: oxenstored
        # answers DIRECTORY over a socket with the whole list, however long.
        self._oversize_ops = frozenset(oversize_ops)

    @property
    def pending(self) -> int:
        """Number of buffered bytes that do not yet form a whole packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> "List[Packet]":
        """Adds ``data`` and returns every packet now complete, in order.

        Raises :class:`UnexpectedPacket` for a header claiming more than
        4096 payload bytes (:data:`OVERSIZE_MAX` for an op given as
        ``oversize_ops``); the stream is then unusable.
        """
        buffer = self._buffer
        if not buffer and len(data) >= _HEADER_SIZE:
            # The common case: exactly one whole packet, nothing buffered.
            op, rq_id, tx_id, size = _unpack_header(data)
            if size + _HEADER_SIZE == len(data) and size <= PAYLOAD_MAX:
                return [_new_packet((op, rq_id, tx_id, size,
                                     data[_HEADER_SIZE:]))]
        if buffer:  # a partial packet waits: parse it with the new bytes
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        elif type(data) is not bytes:  # payloads must be bytes
            data = bytes(data)
        packets = []
        offset, end = 0, len(data)
        size_of = _HEADER_SIZE
        unpack_from = _unpack_header
        make = _new_packet
        while end - offset >= size_of:
            op, rq_id, tx_id, size = unpack_from(data, offset)
            if size > PAYLOAD_MAX:
                limit = OVERSIZE_MAX if op in self._oversize_ops \
                    else PAYLOAD_MAX
                if size > limit:
                    buffer += data[offset:]  # pending stays truthful
                    raise UnexpectedPacket(
                        "packet header claims %d payload bytes, more than "
                        "the %d allowed" % (size, limit))
            start = offset + size_of
            stop = start + size
            if stop > end:
                break
            packets.append(make((op, rq_id, tx_id, size, data[start:stop])))
            offset = stop
        if offset < end:
            buffer += data[offset:] if offset else data
        return packets
