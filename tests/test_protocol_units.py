"""The pure parts of the Xen 4.21/4.22 additions (depth matching, reply
parsing) and the client's answer to malformed replies, which no real
daemon sends (hence a fake peer, and only for that)."""

import pytest
from fakedaemon import FakeDaemon, honest

from pyxs import Client, Feature
from pyxs._depth import levels_below, too_deep, within_depth
from pyxs._features import parse_decimal, parse_names
from pyxs._internal import NUL, Op
from pyxs.exceptions import UnexpectedPacket

BOUND = 10


@pytest.mark.parametrize("path, wpath, levels", [
    (b"/a", b"/a", 0), (b"/a/b", b"/a", 1), (b"/a/b/c", b"/a", 2),
    (b"/ab", b"/a", None), (b"/b", b"/a", None), (b"/a", b"/a/b", None),
    (b"/", b"/", 0), (b"/x", b"/", 1), (b"/x/y", b"/", 2),
    (b"rel", b"rel", 0), (b"rel/x", b"rel", 1), (b"/rel/x", b"rel", None),
    (b"@releaseDomain/5", b"@releaseDomain", 1),
])
def test_levels_below(path, wpath, levels):
    assert levels_below(path, wpath) == levels
    assert within_depth(path, wpath, None) is (levels is not None)
    if levels is not None:
        assert within_depth(path, wpath, levels)
        assert not within_depth(path, wpath, levels - 1)


def test_too_deep_keeps_what_any_watch_of_the_token_accepts():
    depths = {(b"/a", b"t"): 1}
    watches = [(b"/a", b"t"), (b"/a/b/c", b"t"), (b"/a", b"u")]
    assert not too_deep(b"/a/x", b"t", watches, depths)
    assert too_deep(b"/a/x/y", b"t", watches, depths)
    assert not too_deep(b"/a/b/c/d", b"t", watches, depths)  # 2nd watch
    assert not too_deep(b"/a/x/y", b"u", watches, depths)  # other token
    assert not too_deep(b"/elsewhere", b"t", watches, depths)
    # The initial event arrives before the watch is recorded as set.
    assert not too_deep(b"/a", b"t", [], depths)


@pytest.mark.parametrize("reply, value", [
    (b"14\x00", 14), (b"0\x00", 0), (b"7", 7),
    (b"4294967295\x00", 2 ** 32 - 1),
])
def test_parse_decimal(reply, value):
    assert parse_decimal(reply, "GET_QUOTA") == value


@pytest.mark.parametrize("reply", [
    b"", b"\x00", b"x\x00", b"-1\x00", b"+1\x00", b" 1\x00", b"01\x00",
    b"1 \x00", b"4294967296\x00", b"1\x00\x00", b"1\x002\x00", b"9" * 100,
])
def test_parse_decimal_refuses_garbage(reply):
    with pytest.raises(UnexpectedPacket) as info:
        parse_decimal(reply, "GET_FEATURE")
    assert "GET_FEATURE" in str(info.value) and len(str(info.value)) < 200


def test_parse_names():
    assert parse_names(b"nodes watches soft-memory\x00") == [
        "nodes", "watches", "soft-memory"]
    assert parse_names(b"\x00") == []
    for garbage in (b"a  b\x00", b" a\x00", b"a\x00b\x00", b"a\xffb\x00"):
        with pytest.raises(UnexpectedPacket):
            parse_names(garbage)


def test_feature_flags():
    assert int(Feature.WATCHDEPTH | Feature.DOMID_ANY) == 12
    assert [f.value for f in (Feature.RECONNECTION, Feature.ERROR,
                              Feature.WATCHDEPTH, Feature.DOMID_ANY)] == \
        [1, 2, 4, 8]
    assert Feature(14 | 64) & Feature.WATCHDEPTH  # unknown bits are kept


def _answering(feature_reply, quota_reply):
    def handler(conn, request):
        if request.op == Op.GET_FEATURE:
            conn.reply(request, feature_reply)
        elif request.op == Op.GET_QUOTA:
            conn.reply(request, quota_reply)
        elif request.op == Op.GET_DOMAIN_PATH:
            conn.reply(request, b"/local/domain/0\x00")
        else:
            honest(conn, request)
    return handler


def test_malformed_replies_are_unexpected_packets():
    with FakeDaemon(_answering(b"fourteen\x00", b"nodes  x\x00")) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=BOUND) as c:
        with pytest.raises(UnexpectedPacket):
            c.get_features()
        with pytest.raises(UnexpectedPacket):
            c.get_features(5)
        with pytest.raises(UnexpectedPacket):
            c.quota_names()
        with pytest.raises(UnexpectedPacket):
            c.get_quota("nodes")
        assert c.read(b"/a") == b"value"  # the connection is still usable
        with c.monitor() as m:
            with pytest.raises(UnexpectedPacket):  # features unreadable
                m.watch(b"/w", b"t", depth=0)
            assert m.watched == set()
            m.watch(b"/w", b"t")
            sent = [p for p in fake.connections[0].received
                    if p.op == Op.WATCH]
            assert [p.payload for p in sent] == [b"/w" + NUL + b"t" + NUL]
