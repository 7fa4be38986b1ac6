"""Property-based tests of the pure protocol layer and the validators."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxs._internal import HEADER, PAYLOAD_MAX, Op, Packet, PacketDecoder
from pyxs.exceptions import (
    InvalidPath,
    InvalidPermission,
    InvalidToken,
    UnexpectedPacket,
)
from pyxs.helpers import (
    validate_path,
    validate_perms,
    validate_token,
    validate_watch_path,
)

ops = st.sampled_from(sorted(set(Op)))
ids = st.integers(min_value=0, max_value=2 ** 32 - 1)
# Positional, as callers build packets (builds() would go by _fields).
packets = st.builds(lambda op, payload, rq_id, tx_id:
                    Packet(op, payload, rq_id, tx_id),
                    ops, st.binary(max_size=PAYLOAD_MAX), ids, ids)


@given(st.lists(packets, max_size=8), st.lists(st.integers(1, 5000),
                                               max_size=20))
@settings(max_examples=200, deadline=None)
def test_decoder_returns_the_packets_however_the_bytes_are_cut(
        sent, cuts):
    stream = b"".join(bytes(p) for p in sent)
    decoder = PacketDecoder()
    received = []
    position = 0
    for cut in cuts:
        received += decoder.feed(stream[position:position + cut])
        position += cut
    received += decoder.feed(stream[position:])
    assert received == sent
    assert decoder.pending == 0


@given(ops, ids, ids, st.integers(PAYLOAD_MAX + 1, 2 ** 32 - 1))
def test_decoder_refuses_oversize_claims(op, rq_id, tx_id, size):
    if op == Op.DIRECTORY:  # oxenstored's unbounded listings are allowed
        size = max(size, 2 ** 24 + 1)
    with pytest.raises(UnexpectedPacket):
        PacketDecoder().feed(HEADER.pack(op, rq_id, tx_id, size))


@given(st.binary(max_size=PAYLOAD_MAX * 2))
def test_packet_refuses_payloads_over_the_limit(payload):
    if len(payload) > PAYLOAD_MAX:
        with pytest.raises(ValueError):
            Packet(Op.WRITE, payload, 1)
    else:
        assert Packet(Op.WRITE, payload, 1).size == len(payload)


VALID_PATH = re.compile(rb"/?[A-Za-z0-9_@-]+(/[A-Za-z0-9_@-]+)*\Z|/\Z")

path_alphabet = st.sampled_from(list("abz09_-@/") + ["\x00", "%", " ", "é",
                                                     "\n"])


@given(st.text(path_alphabet, max_size=40))
@settings(max_examples=500)
def test_validate_path_accepts_exactly_the_valid_paths(text):
    try:
        checked = validate_path(text)
    except InvalidPath:
        raw = text.encode("utf-8")
        assert not VALID_PATH.match(raw) or len(raw) > 2048
    else:
        assert VALID_PATH.match(checked)
        assert b"\x00" not in checked


@given(st.integers(1, 5000), st.booleans())
def test_path_length_limits(length, absolute):
    path = (b"/" if absolute else b"") + b"a" * (length - absolute)
    limit = 3072 if absolute else 2048
    if length <= limit:
        assert validate_path(path) == path
    else:
        with pytest.raises(InvalidPath):
            validate_path(path)


@given(st.text(path_alphabet, max_size=20))
def test_watch_paths_allow_only_the_two_special_names(text):
    try:
        checked = validate_watch_path(text)
    except InvalidPath:
        return
    if checked.startswith(b"@"):
        assert checked in (b"@introduceDomain", b"@releaseDomain")


@given(st.binary(max_size=30))
def test_tokens_never_carry_a_nul(token):
    try:
        assert validate_token(token) == token
    except InvalidToken:
        assert b"\x00" in token or not token
    else:
        assert b"\x00" not in token and token


@given(st.lists(st.text(st.sampled_from("rwbnx0123456789é\x00"),
                        max_size=6), max_size=5))
def test_validate_perms(perms):
    try:
        checked = validate_perms(perms)
    except InvalidPermission:
        assert not perms or not all(
            re.fullmatch(r"[rwbn][0-9]+", p) and int(p[1:]) < 2 ** 32
            for p in perms)
    else:
        assert checked == [p.encode() for p in perms]
