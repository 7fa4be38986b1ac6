"""Randomized differential stress against C xenstored: many domains, deep
trees, the limits.

Guests of C xenstored live on shared-memory rings that a machine without
Xen cannot offer, so what is compared is what a dom0 socket reaches: a
seeded random mix of dom0 requests on trees as deep as the path-length
limit allows (absolute and relative paths on both sides of the 2,048-byte
``path-max``), values and permission lists beyond what a guest may set
(dom0 is never limited: both daemons must accept them), ownership handed
to eight guest domains that are introduced and released (RELEASE removes
every deep subtree a domain owns), transactions over deep trees, and
watches on deep paths. Every reply must be byte-identical (DIRECTORY_PART
generation counts included) and every step must give the same set of watch
events; every 25 steps and at the end, the node count C xenstored's
``CONTROL quota <domid>`` reports for each introduced domain must equal the
embedded daemon's own accounting (the count its node quota checks).

What cannot be compared here (guest requests, the watch/transaction/
outstanding quotas of guests, backpressure) is tested against C's
documented rules in test_guest_abuse.py.
"""

import random
import re
from typing import Dict, List, Set, Tuple

import pytest

from pyxs._internal import Op
from pyxs.server import Quotas, XenStoreServer
from pyxs.testing import XenStoreDaemon

from .rawclient import RawClient

SEEDS = [11, 12, 13, 14]
STEPS = 200
GUESTS = list(range(1, 9))
_NODES = re.compile(rb"nodes\s*:\s*(\d+)")


def _deep(rng: random.Random) -> bytes:
    """A path of 1 to ~1,030 levels, absolute or relative, often long."""
    roll = rng.random()
    if roll < 0.5:
        depth = rng.choice([rng.randint(1, 6), rng.randint(500, 1030)])
    else:
        depth = rng.randint(1, 40)
    names = [rng.choice([b"a", b"b"]) for _ in range(depth)]
    if rng.random() < 0.2:
        return b"/".join(names)  # relative: /local/domain/0/...
    top = rng.choice([b"/d", b"/d/a", b"/e"])
    return top + b"/" + b"/".join(names)


def _ancestor(rng: random.Random, path: bytes) -> bytes:
    parts = path.split(b"/")
    keep = rng.randint(1, len(parts))
    cut = b"/".join(parts[:keep])
    return cut or b"/d"


class _Scenario:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.paths: List[bytes] = [b"/d"]
        self.tx: List[int] = []
        self.introduced: Set[int] = set()

    def step(self) -> Tuple[int, bytes, int]:
        rng = self.rng
        tx = rng.choice(self.tx) if self.tx and rng.random() < 0.3 else 0
        known = rng.choice(self.paths)
        kind = rng.choices(
            ["write", "mkdir", "rm", "read", "dir", "dirpart", "perms",
             "setperms", "txstart", "txend", "watch", "introduce",
             "release"],
            [16, 5, 8, 4, 4, 4, 3, 8, 3, 3, 3, 5, 4])[0]
        if kind == "write":
            path = _deep(rng) if rng.random() < 0.6 else known
            self.paths.append(path)
            value = rng.choice([b"", b"v", b"x" * rng.randint(2000, 3000)])
            payload = path + b"\x00" + value
            return Op.WRITE, payload[:4096], tx
        if kind == "mkdir":
            path = _deep(rng)
            self.paths.append(path)
            return Op.MKDIR, path + b"\x00", tx
        if kind == "rm":
            return Op.RM, _ancestor(rng, known) + b"\x00", tx
        if kind in ("read", "dir", "perms"):
            op = {"read": Op.READ, "dir": Op.DIRECTORY,
                  "perms": Op.GET_PERMS}[kind]
            return op, _ancestor(rng, known) + b"\x00", tx
        if kind == "dirpart":
            return (Op.DIRECTORY_PART, _ancestor(rng, known) + b"\x000\x00",
                    tx)
        if kind == "setperms":
            owner = rng.choice([0] + GUESTS)
            # up to 8 entries: more than a guest may set, fine for dom0
            extra = [b"%s%d" % (rng.choice([b"r", b"w", b"b", b"n"]),
                                rng.choice(GUESTS))
                     for _ in range(rng.randint(0, 7))]
            perms = [b"n%d" % owner] + extra
            return (Op.SET_PERMS, _ancestor(rng, known) + b"\x00"
                    + b"".join(p + b"\x00" for p in perms), tx)
        if kind == "txstart":
            return Op.TRANSACTION_START, b"\x00", 0
        if kind == "txend":
            if not self.tx:
                return Op.TRANSACTION_END, b"T\x00", 0
            tx = self.tx.pop(rng.randrange(len(self.tx)))
            return Op.TRANSACTION_END, rng.choice([b"T\x00", b"F\x00"]), tx
        if kind == "watch":
            return (Op.WATCH, _ancestor(rng, known) + b"\x00w%d\x00"
                    % rng.randint(0, 99), 0)
        domid = rng.choice(GUESTS)
        if kind == "introduce":
            self.introduced.add(domid)
            return Op.INTRODUCE, b"%d\x0099\x001\x00" % domid, 0
        self.introduced.discard(domid)
        return Op.RELEASE, b"%d\x00" % domid, 0


def _c_nodes(c_dom0: RawClient, domid: int) -> int:
    report = c_dom0.call(Op.CONTROL, b"quota\x00%d\x00" % domid)
    match = _NODES.search(report)
    assert match, report
    return int(match.group(1))


def _compare_accounting(c_dom0: RawClient, server: XenStoreServer,
                        domains: Set[int], where: str) -> None:
    ours = server.core.store.owned
    for domid in sorted(domains):
        assert _c_nodes(c_dom0, domid) == ours.get(domid, 0), \
            "%s: nodes owned by domain %d" % (where, domid)


@pytest.fixture(scope="module")
def c_daemons():
    started = []

    def start():
        daemon = XenStoreDaemon("xenstored").start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.mark.parametrize("seed", SEEDS)
def test_deep_trees_and_many_domains_match_c(seed, c_daemons) -> None:
    c_daemon = c_daemons()
    with XenStoreServer() as server:
        c_side = [RawClient(c_daemon.socket_path) for _ in range(2)]
        ours = [RawClient(server.socketpair()) for _ in range(2)]
        for side in (c_side, ours):
            side[1].call(Op.WATCH, b"/\x00all\x00")
            side[1].take_events()
        scenario = _Scenario(seed)
        deep_ops: Dict[str, int] = {}
        for step in range(STEPS):
            op, payload, tx = scenario.step()
            expected = c_side[0].request(op, payload, tx)
            actual = ours[0].request(op, payload, tx)
            where = "seed %d step %d: %s %r... (%d bytes) tx=%d" % (
                seed, step, Op.name_of(op), payload[:40], len(payload), tx)
            assert (actual.op, actual.payload, actual.tx_id) == (
                expected.op, expected.payload, expected.tx_id), where
            if op == Op.TRANSACTION_START and expected.op == op:
                scenario.tx.append(int(expected.payload[:-1]))
            if payload.count(b"/") >= 500 and expected.op != Op.ERROR:
                name = Op.name_of(op)
                deep_ops[name] = deep_ops.get(name, 0) + 1
            for index in range(2):
                assert ours[index].take_events() == \
                    c_side[index].take_events(), \
                    "%s: events on connection %d" % (where, index)
            if step % 25 == 24:
                _compare_accounting(c_side[0], server, scenario.introduced,
                                    where)
        _compare_accounting(c_side[0], server, scenario.introduced,
                            "seed %d end" % seed)
        # the stress reached what it is about
        assert deep_ops.get("WRITE", 0) + deep_ops.get("MKDIR", 0) >= 5, \
            deep_ops
        for client in c_side + ours:
            client.close()


@pytest.mark.parametrize("seed", [21, 22])
def test_many_guests_many_connections_keep_cs_quota_rules(seed) -> None:
    """Guests on the embedded daemon only (see the module docstring): six
    domains with three connections each, which come and go, hit their
    quotas; every WATCH and TRANSACTION_START reply is predicted from C's
    rules (E2BIG once a domain holds more than ``watches`` watches over all
    its connections, ENOSPC beyond ``transactions``), and a domain never
    owns more than ``nodes`` nodes however deep its writes."""
    rng = random.Random(seed)
    quotas = Quotas(nodes=60, watches=6, transactions=2)
    with XenStoreServer(quotas=quotas) as server:
        dom0 = RawClient(server.socketpair())
        guests = list(range(1, 7))
        for domid in guests:
            home = b"/local/domain/%d\x00" % domid
            dom0.call(Op.MKDIR, home)
            dom0.call(Op.SET_PERMS, home + b"n%d\x00" % domid)
        conns: Dict[int, List[RawClient]] = {
            d: [RawClient(server.socketpair(d)) for _ in range(3)]
            for d in guests}
        watches: Dict[RawClient, Set[bytes]] = {
            c: set() for cs in conns.values() for c in cs}
        txs: Dict[RawClient, List[int]] = {c: [] for c in watches}
        for step in range(1500):
            domid = rng.choice(guests)
            index = rng.randrange(3)
            conn = conns[domid][index]
            kind = rng.choice(["write", "write", "rm", "watch", "watch",
                               "unwatch", "txstart", "txend", "reconnect"])
            where = "seed %d step %d domain %d %s" % (seed, step, domid, kind)
            if kind == "write":
                depth = rng.choice([1, 3, 20, 200, 1000])
                path = b"/".join([b"n"] * depth)[:2000].rstrip(b"/")
                reply = conn.call(Op.WRITE, path + b"/%d\x00v"
                                  % rng.randint(0, 9))
                assert reply in (b"OK\x00", b"ENOSPC"), where
            elif kind == "rm":
                assert conn.call(Op.RM, b"n\x00") == b"OK\x00", where
            elif kind == "watch":
                token = b"t%d" % rng.randint(0, 9)
                total = sum(len(watches[c]) for c in conns[domid])
                expect = (b"EEXIST" if token in watches[conn] else
                          b"E2BIG" if total > quotas.watches else b"OK\x00")
                assert conn.call(Op.WATCH, b"n\x00" + token + b"\x00") \
                    == expect, where
                if expect == b"OK\x00":
                    watches[conn].add(token)
                    conn.events.clear()
            elif kind == "unwatch" and watches[conn]:
                token = watches[conn].pop()
                assert conn.call(Op.UNWATCH, b"n\x00" + token + b"\x00") \
                    == b"OK\x00", where
            elif kind == "txstart":
                total = sum(len(txs[c]) for c in conns[domid])
                reply = conn.call(Op.TRANSACTION_START, b"\x00")
                if total > quotas.transactions:
                    assert reply == b"ENOSPC", where
                else:
                    txs[conn].append(int(reply[:-1]))
            elif kind == "txend" and txs[conn]:
                tx_id = txs[conn].pop()
                assert conn.call(Op.TRANSACTION_END, b"F\x00", tx_id) \
                    == b"OK\x00", where
            elif kind == "reconnect":
                conn.close()
                fresh = RawClient(server.socketpair(domid))
                conns[domid][index] = fresh
                del watches[conn], txs[conn]
                watches[fresh], txs[fresh] = set(), []
                conns[domid][(index + 1) % 3].sync()  # the close is seen
            owned = server.core.store.owned.get(domid, 0)
            assert owned <= quotas.nodes, where
        assert server._thread is not None and server._thread.is_alive()
        for cs in conns.values():
            for conn in cs:
                conn.close()
        dom0.close()
