"""The embedded daemon against Xen 4.22's own C xenstored, for what 4.21
and 4.22 added: GET/SET_FEATURE, GET/SET_QUOTA, watch depth, per-domain
special watches and CONTROL's quota and log reports.

Seeded random raw requests go to a fresh C xenstored 4.22 (built from
source by :mod:`pyxs.testing`) and a fresh embedded daemon; every reply
must be byte-identical and every step must give the same set of watch
events on each connection (sets, as in ``test_differential.py``).

Never generated, with the reason:

- SET_PERMS with a DOMID_ANY entry (``r32757``): it crashes this C
  xenstored from a socket connection (upstream bug, see
  :func:`test_c_xenstored_422_crashes_on_domid_any_perms`);
- CONTROL ``help`` (the embedded daemon has no ``live-update``) and
  ``quota <domid>`` (C counts memory in its own allocator's bytes).
"""

import random
from typing import List, Tuple

import pytest
from server.rawclient import RawClient

from pyxs._internal import Op
from pyxs.server import XenStoreServer
from pyxs.testing import XenStoreDaemon

SEEDS = [11, 12, 13, 14, 15, 16]
STEPS = 200
_DOMIDS = [b"0", b"1", b"2", b"3", b"5", b" 5", b"5x", b"", b"-1",
           b"32751", b"32752", b"65535", b"70000"]
_QUOTA_NAMES = [b"nodes", b"watches", b"outstanding", b"memory",
                b"soft-memory", b"transactions", b"transaction-nodes",
                b"node-permissions", b"path-max", b"node-size",
                b"permissions", b"soft-nodes", b"", b"bogus"]
_VALUES = [b"0", b"1", b"5", b"2000", b"-1", b"abc", b"12x", b" 7",
           b"4294967295"]
_FEATURES = [b"0", b"2", b"4", b"8", b"14", b"6", b"1", b"16", b"abc",
             b"3x", b"-1"]
_WATCH_PATHS = [b"/t", b"/t/a", b"/", b"x", b"@releaseDomain",
                b"@introduceDomain", b"@releaseDomain/3",
                b"@releaseDomain/5", b"@introduceDomain/3",
                b"@releaseDomain/abc"]
_DEPTHS = [None, None, b"0", b"1", b"1", b"2", b"abc", b"-1", b" 3"]
_COMPONENTS = [b"a", b"b", b"c"]


def _fields(*fields: bytes) -> bytes:
    return b"".join(field + b"\x00" for field in fields)


class Scenario:
    """Random requests for the 4.21/4.22 additions, with some tree and
    domain traffic so that quotas, features and watches interact."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _domid(self) -> bytes:
        return self.rng.choice(_DOMIDS)

    def _path(self) -> bytes:
        rng = self.rng
        depth = rng.randint(0, 3)
        return b"/".join([b"/t"] + [rng.choice(_COMPONENTS)
                                    for _ in range(depth)])

    def step(self) -> Tuple[int, int, bytes]:
        """``(connection, op, payload)`` of the next request."""
        rng = self.rng
        conn = 0 if rng.random() < 0.8 else 1
        kind = rng.choices(
            ["getfeat", "setfeat", "getquota", "setquota", "watch",
             "unwatch", "write", "rm", "domain", "control"],
            [6, 6, 6, 6, 8, 3, 10, 4, 5, 3])[0]
        if kind == "getfeat":
            fields = rng.choice([[], [self._domid()],
                                 [self._domid(), b"1"]])
            return conn, Op.GET_FEATURE, _fields(*fields)
        if kind == "setfeat":
            fields = [self._domid(), rng.choice(_FEATURES)]
            if rng.random() < 0.1:
                fields = fields[:1] if rng.random() < 0.5 else \
                    fields + [b"1"]
            return conn, Op.SET_FEATURE, _fields(*fields)
        if kind == "getquota":
            name = rng.choice(_QUOTA_NAMES)
            fields = rng.choice([[], [name], [self._domid(), name],
                                 [self._domid(), name, b"x"]])
            return conn, Op.GET_QUOTA, _fields(*fields)
        if kind == "setquota":
            name, value = rng.choice(_QUOTA_NAMES), rng.choice(_VALUES)
            fields = rng.choice([[name, value], [self._domid(), name, value],
                                 [name], [b"1", name, value, value]])
            return conn, Op.SET_QUOTA, _fields(*fields)
        if kind in ("watch", "unwatch"):
            path = rng.choice(_WATCH_PATHS + [self._path()])
            token = rng.choice([b"t1", b"t2", b"t3"])
            depth = rng.choice(_DEPTHS)
            fields = [path, token] + ([depth] if depth is not None else [])
            if rng.random() < 0.05:
                fields.append(b"9")
            op = Op.WATCH if kind == "watch" else Op.UNWATCH
            return conn, op, _fields(*(fields if op == Op.WATCH
                                       else fields[:2]))
        if kind == "write":
            return conn, Op.WRITE, self._path() + b"\x00" + \
                rng.choice([b"", b"v", b"w"])
        if kind == "rm":
            return conn, Op.RM, _fields(self._path())
        if kind == "domain":
            domid = rng.choice([b"1", b"2", b"3", b"5"])
            op, payload = rng.choice([
                (Op.INTRODUCE, _fields(domid, b"99", b"1")),
                (Op.RELEASE, _fields(domid)),
                (Op.IS_DOMAIN_INTRODUCED, _fields(domid))])
            return conn, op, payload
        command = rng.choice([
            [b"quota"], [b"quota-soft"], [b"log"], [b"log", b"+wrl"],
            [b"log", b"-io"], [b"log", b"+bogus"], [b"check"],
            [b"print", b"hi"], [b"quota", b"set", b"nodes", b"500"],
            [b"quota", b"set", b"nodes", b"0"],
            [b"quota", b"set", b"bogus", b"3"],
            [b"quota-soft", b"set", b"memory", b"7"],
            [b"quota-soft", b"set", b"nodes", b"7"], [b"quota", b"max"],
            [b"nope"]])
        return conn, Op.CONTROL, _fields(*command)


@pytest.fixture
def c_daemon():
    """A fresh C xenstored 4.22 (a failure to build or start fails)."""
    with XenStoreDaemon("xenstored", xen="4.22") as running:
        yield running


def _pair(path: str) -> List[RawClient]:
    return [RawClient(path), RawClient(path)]


@pytest.mark.parametrize("seed", SEEDS)
def test_same_replies_and_events_as_xenstored_422(seed, c_daemon) -> None:
    with XenStoreServer() as server:
        theirs = _pair(c_daemon.socket_path)
        ours = [RawClient(server.socketpair()),
                RawClient(server.socketpair())]
        for side in (theirs, ours):
            side[1].call(Op.WATCH, b"/\x00all\x00")
            side[1].call(Op.WATCH, b"/t\x00one\x001\x00")
        scenario = Scenario(seed)
        for step in range(STEPS):
            conn, op, payload = scenario.step()
            expected = theirs[conn].request(op, payload)
            actual = ours[conn].request(op, payload)
            where = "seed %d step %d: %s %r" % (seed, step, Op.name_of(op),
                                                payload[:60])
            assert (actual.op, actual.payload) == (
                expected.op, expected.payload), where
            for index in range(2):
                assert ours[index].take_events() == \
                    theirs[index].take_events(), \
                    "%s: events on connection %d" % (where, index)
        assert c_daemon.running
        for client in theirs + ours:
            client.close()


_FACTS = [  # (op, payload) pairs from ../shared/xen-4.22/README.md
    (Op.GET_FEATURE, b""), (Op.GET_FEATURE, b"\x00"),
    (Op.GET_FEATURE, b"0\x00"), (Op.GET_FEATURE, b"32752\x00"),
    (Op.GET_FEATURE, b"70000\x00"), (Op.SET_FEATURE, b"0\x0014\x00"),
    (Op.SET_FEATURE, b"5\x002\x00"), (Op.GET_FEATURE, b"5\x00"),
    (Op.SET_FEATURE, b"5\x001\x00"), (Op.SET_FEATURE, b"5\x0016\x00"),
    (Op.INTRODUCE, b"5\x0099\x001\x00"), (Op.SET_FEATURE, b"5\x002\x00"),
    (Op.GET_QUOTA, b""), (Op.GET_QUOTA, b"nodes\x00"),
    (Op.GET_QUOTA, b"0\x00nodes\x00"), (Op.GET_QUOTA, b"32752\x00nodes\x00"),
    (Op.GET_QUOTA, b"permissions\x00"), (Op.SET_QUOTA, b"nodes\x002000\x00"),
    (Op.SET_QUOTA, b"6\x00nodes\x0077\x00"), (Op.GET_QUOTA, b"6\x00nodes\x00"),
    (Op.SET_QUOTA, b"nodes\x000\x00"), (Op.GET_QUOTA, b"7\x00nodes\x00"),
    (Op.WATCH, b"/wd\x00tok\x001\x00"), (Op.WATCH, b"/wd\x00t0\x000\x00"),
    (Op.WATCH, b"/wd\x00bad\x00-1\x00"), (Op.WATCH, b"/wd\x00x\x001\x002\x00"),
    (Op.WATCH, b"/wd\x00abc\x00abc\x00"), (Op.WRITE, b"/wd/x\x00v"),
    (Op.WRITE, b"/wd/a/b\x00v"), (Op.WRITE, b"/wd\x00v"),
    (Op.RM, b"/wd/a\x00"),
    (Op.WATCH, b"@releaseDomain\x00r1\x001\x00"),
    (Op.WATCH, b"@releaseDomain/5\x00r5\x00"),
    (Op.WATCH, b"@releaseDomain/6\x00r6\x00"),
    (Op.WATCH, b"@releaseDomain\x00r0\x000\x00"),
    (Op.WATCH, b"@introduceDomain\x00i1\x001\x00"),
    (Op.INTRODUCE, b"8\x0099\x001\x00"), (Op.RELEASE, b"5\x00"),
    (Op.GET_PERMS, b"@releaseDomain\x00"),
    (Op.CONTROL, b"quota\x00"), (Op.CONTROL, b"quota-soft\x00"),
    (Op.CONTROL, b"log\x00"), (Op.CONTROL, b"quota\x00max\x00"),
]


def test_documented_answers_match(c_daemon) -> None:
    with XenStoreServer() as server:
        same_answers(c_daemon, server, _FACTS)


def same_answers(c_daemon, server, requests) -> None:
    """Each request, sent to both daemons in turn, gets the same reply
    and the same events from each."""
    theirs, ours = RawClient(c_daemon.socket_path), \
        RawClient(server.socketpair())
    for op, payload in requests:
        expected = theirs.request(op, payload)
        actual = ours.request(op, payload)
        assert (actual.op, actual.payload) == (
            expected.op, expected.payload), (Op.name_of(op), payload)
        assert ours.take_events() == theirs.take_events(), payload
    theirs.close()
    ours.close()


def test_c_xenstored_422_crashes_on_domid_any_perms(c_daemon) -> None:
    """Upstream bug in 4.22.0: SET_PERMS naming DOMID_ANY from a socket
    kills C xenstored (NULL ``conn->domain``). The embedded daemon takes
    such an entry and lets every domain read through it."""
    victim = RawClient(c_daemon.socket_path)
    assert victim.call(Op.WRITE, b"/any\x00v") == b"OK\x00"
    victim.send(Op.SET_PERMS, b"/any\x00n0\x00r32757\x00")
    with pytest.raises((EOFError, ConnectionError)):
        victim.reply(victim.rq_id)
    c_daemon.process.wait(10)
    assert not c_daemon.running
    with XenStoreServer() as server:
        dom0 = RawClient(server.socketpair())
        assert dom0.call(Op.WRITE, b"/any\x00v") == b"OK\x00"
        assert dom0.call(Op.SET_PERMS, b"/any\x00n0\x00r32757\x00") == \
            b"OK\x00"
        assert dom0.call(Op.GET_PERMS, b"/any\x00") == b"n0\x00r32757\x00"
        guest = RawClient(server.socketpair(4))
        assert guest.call(Op.READ, b"/any\x00") == b"v"
        assert dom0.call(Op.SET_PERMS, b"/any\x00n0\x00") == b"OK\x00"
        assert guest.call(Op.READ, b"/any\x00") == b"EACCES"
        for client in (dom0, guest):
            client.close()


_OLDER = [  # what older releases answer for the same requests
    (Op.GET_FEATURE, b""), (Op.GET_FEATURE, b"0\x00"),
    (Op.SET_FEATURE, b"5\x002\x00"), (Op.GET_QUOTA, b""),
    (Op.SET_QUOTA, b"nodes\x005\x00"), (Op.WATCH, b"/wd\x00t\x001\x00"),
    (Op.WATCH, b"@releaseDomain\x00t\x001\x00"),
    (Op.WATCH, b"@releaseDomain/5\x00r5\x00"),
    (Op.WATCH, b"@releaseDomain\x00plain\x00"),
    (Op.INTRODUCE, b"5\x0099\x001\x00"), (Op.RELEASE, b"5\x00"),
    (Op.GET_PERMS, b"@releaseDomain\x00"),
    (Op.CONTROL, b"quota\x00"), (Op.CONTROL, b"quota-soft\x00"),
    (Op.CONTROL, b"quota\x00set\x00nodes\x00900\x00"),
    (Op.CONTROL, b"quota\x00set\x00nodes\x000\x00"),
    (Op.CONTROL, b"quota-soft\x00set\x00memory\x00700\x00"),
    (Op.CONTROL, b"quota\x00"), (Op.CONTROL, b"quota-soft\x00"),
    (Op.CONTROL, b"log\x00"), (Op.CONTROL, b"check\x00"),
    (Op.CONTROL, b"print\x00x\x00"), (Op.CONTROL, b"nope\x00"),
]


@pytest.mark.parametrize("release", ["4.17", "4.20"])
def test_embedded_as_an_older_release(release) -> None:
    with XenStoreDaemon("xenstored", xen=release) as c_daemon, \
            XenStoreServer(xen=release) as server:
        same_answers(c_daemon, server, _OLDER)
