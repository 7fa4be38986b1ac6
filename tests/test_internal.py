"""The pure protocol layer: packets, framing and operation names."""

import struct

import pytest

from pyxs._internal import (
    HEADER,
    NUL,
    OVERSIZE_MAX,
    PAYLOAD_MAX,
    Event,
    Op,
    Packet,
    PacketDecoder,
    decode_header,
    encode,
    next_rq_id,
    op_name,
)
from pyxs.exceptions import (
    InvalidOperation,
    InvalidPayload,
    PyXSError,
    UnexpectedPacket,
)

WIRE = struct.Struct("=IIII")


def test_packet_encodes_header_and_payload():
    packet = Packet(Op.READ, b"/a/b\x00", rq_id=7, tx_id=3)
    assert bytes(packet) == WIRE.pack(2, 7, 3, 5) + b"/a/b\x00"
    assert (packet.op, packet.rq_id, packet.tx_id, packet.size) == \
        (Op.READ, 7, 3, 5)


def test_packet_defaults_and_str_payload():
    packet = Packet(Op.WRITE, "/é\x00v")
    assert packet.payload == "/é\x00v".encode()
    assert packet.rq_id == 0 and packet.tx_id == 0
    assert packet.size == len(packet.payload)


def test_encode_matches_packet_bytes():
    assert encode(Op.MKDIR, 9, 4, b"/x\x00") == \
        bytes(Packet(Op.MKDIR, b"/x\x00", 9, 4))


@pytest.mark.parametrize("op", [20, 27, 127, 129, 999, -1])
def test_invalid_op_is_refused(op):
    with pytest.raises(InvalidOperation) as info:
        Packet(op, b"")
    assert info.value.args == (op,)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PyXSError)


def test_payload_limit():
    assert Packet(Op.WRITE, b"x" * PAYLOAD_MAX).size == 4096
    with pytest.raises(InvalidPayload) as info:
        Packet(Op.WRITE, b"x" * (PAYLOAD_MAX + 1))
    message = str(info.value)
    assert "4097" in message and len(message) < 200


def test_packet_repr_is_short():
    text = repr(Packet(Op.WRITE, b"/k\x00" + b"v" * 4000, rq_id=1))
    assert text.startswith("Packet(WRITE, ")
    assert len(text) < 150


def test_fields_split_on_nul():
    assert Packet(Op.DIRECTORY, b"a\x00b\x00").fields() == [b"a", b"b"]
    assert Packet(Op.DIRECTORY, b"").fields() == []
    assert Packet(Op.READ, b"raw").fields() == [b"raw"]


def test_op_numbers():
    assert (Op.CONTROL, Op.DIRECTORY, Op.READ, Op.GET_PERMS, Op.WATCH,
            Op.UNWATCH, Op.TRANSACTION_START, Op.TRANSACTION_END,
            Op.INTRODUCE, Op.RELEASE, Op.GET_DOMAIN_PATH, Op.WRITE, Op.MKDIR,
            Op.RM, Op.SET_PERMS, Op.WATCH_EVENT, Op.ERROR,
            Op.IS_DOMAIN_INTRODUCED, Op.RESUME, Op.SET_TARGET,
            Op.RESET_WATCHES, Op.DIRECTORY_PART) == \
        tuple(range(20)) + (21, 22)
    assert (Op.GET_FEATURE, Op.SET_FEATURE, Op.GET_QUOTA,
            Op.SET_QUOTA) == (23, 24, 25, 26)
    assert Op.RESTRICT == 128 and 128 in Op
    assert 20 not in Op


def test_op_names_and_aliases():
    assert Op.DEBUG == Op.CONTROL == 0
    assert op_name(0) == Op.name_of(0) == "CONTROL"
    assert op_name(Op.DIRECTORY_PART) == "DIRECTORY_PART"
    assert op_name(Op.RESTRICT) == "RESTRICT"
    assert op_name(Op.WATCH_EVENT) == "WATCH_EVENT"
    assert op_name(20) == "OP20"
    assert op_name(4242) == "OP4242"


def test_event_is_a_path_token_pair():
    event = Event(b"/a", b"tok")
    path, token = event
    assert (path, token) == (event.path, event.token) == (b"/a", b"tok")


def test_next_rq_id_is_fresh_and_nonzero():
    ids = [next_rq_id() for _ in range(100)]
    assert len(set(ids)) == 100 and 0 not in ids


def test_decode_header():
    header = decode_header(WIRE.pack(11, 5, 6, 100))
    assert (header.op, header.rq_id, header.tx_id, header.size) == \
        (11, 5, 6, 100)
    with pytest.raises(UnexpectedPacket, match="4097"):
        decode_header(WIRE.pack(2, 1, 0, 4097))


def _stream(*packets):
    return b"".join(bytes(p) for p in packets)


def test_decoder_byte_by_byte():
    packets = [Packet(Op.READ, b"value-%d" % i, rq_id=i + 1)
               for i in range(3)] + [Packet(Op.WATCH_EVENT, b"/a\x00t\x00")]
    data = _stream(*packets)
    decoder = PacketDecoder()
    out = []
    for index in range(len(data)):
        out.extend(decoder.feed(data[index:index + 1]))
        if index < HEADER.size - 1:
            assert decoder.pending == index + 1
    assert out == packets
    assert decoder.pending == 0


def test_decoder_many_packets_in_one_buffer():
    packets = [Packet(Op.DIRECTORY, NUL.join(b"n%d" % j for j in range(i)),
                      rq_id=i) for i in range(50)]
    assert PacketDecoder().feed(_stream(*packets)) == packets


def test_decoder_split_across_buffers_keeps_remainder():
    first, second = Packet(Op.READ, b"abc", 1), Packet(Op.READ, b"x" * 4096, 2)
    data = _stream(first, second)
    decoder = PacketDecoder()
    assert decoder.feed(data[:HEADER.size + 3 + 10]) == [first]
    assert decoder.pending == 10
    assert decoder.feed(data[HEADER.size + 3 + 10:-1]) == []
    assert decoder.feed(data[-1:]) == [second]
    assert decoder.pending == 0


def test_decoder_empty_payload():
    packet = Packet(Op.TRANSACTION_END, b"", 4)
    assert PacketDecoder().feed(bytes(packet)) == [packet]


def test_decoder_refuses_oversize_header():
    decoder = PacketDecoder()
    with pytest.raises(UnexpectedPacket, match="5000 payload bytes"):
        decoder.feed(WIRE.pack(Op.READ, 1, 0, 5000))


def test_decoder_accepts_oversize_only_for_listed_ops():
    names = NUL.join(b"child-%05d" % i for i in range(1000)) + NUL
    big = WIRE.pack(Op.DIRECTORY, 3, 0, len(names)) + names
    decoder = PacketDecoder([Op.DIRECTORY])
    (packet,) = decoder.feed(big)
    assert packet.op == Op.DIRECTORY and packet.size == len(names) > 4096
    assert len(packet.fields()) == 1000
    with pytest.raises(UnexpectedPacket):
        PacketDecoder([Op.DIRECTORY]).feed(WIRE.pack(Op.READ, 1, 0, 4097))
    with pytest.raises(UnexpectedPacket):
        PacketDecoder([Op.DIRECTORY]).feed(
            WIRE.pack(Op.DIRECTORY, 1, 0, OVERSIZE_MAX + 1))
    with pytest.raises(UnexpectedPacket):
        PacketDecoder().feed(big)
