"""A hostile daemon driven by hypothesis.

Threads, each with its own Client on one shared router (and one with a
Monitor), make calls while a fake daemon (tests/fakedaemon.py) answers the
requests, in the order they arrive, following a script hypothesis draws:
honest replies, random payloads, wrong ops, request and transaction ids,
replies sent twice or in pieces, floods of stray replies and events, no
reply at all, truncated frames and hang-ups. Whatever the script, these
hold:

* only pyxs exceptions escape a call (no ValueError, struct.error, ...),
  and the router thread never fails with anything else;
* no call outlives its timeout (by more than scheduling slack);
* a value goes to the caller whose request id it came with: a read
  returns a payload the daemon sent under that read's request id, and a
  monitor only ever gets events carrying its own token;
* every value a call returns has the shape its operation promises.

Deterministic for CI: derandomized, no example database, 30 examples
(about 5 s); ``PYXS_FUZZ_EXAMPLES=2000`` runs a longer search.
"""

import logging
import os
import threading
import time
from typing import Any, Dict, List, Set, Tuple

from fakedaemon import FakeConnection, FakeDaemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxs import Client
from pyxs._internal import HEADER, NUL, Event, Op, Packet
from pyxs._replies import TX_ID_MAX
from pyxs.exceptions import PyXSError
from pyxs.router import Router

TIMEOUT = 0.2  # each call's timeout
SLACK = 3.0     # scheduling slack on a loaded CI machine, per request
JOIN = 15       # a thread still alive after this has hung

OPS = sorted(set(Op))
INTERESTING = [
    b"", NUL, b"OK\x00", b"T\x00", b"F\x00", b"0\x00", b"1\x00",
    b"4294967296\x00", b"abc\x00", b"/local/domain/1\x00", b"a\x00b\x00",
    b"ENOENT\x00", b"EQUOTA\x00", b"E2BIG\x00", b"7\x00a\x00\x00",
    b"7\x00a\x00", b"5",
    b"\xff" * 64, b"E" + b"X" * 4000 + NUL, b"n0\x00", b"/w\x00tok-0\x00",
]
payloads = st.one_of(st.sampled_from(INTERESTING), st.binary(max_size=48))

actions = st.one_of(
    st.just(("honest",)),
    st.tuples(st.just("payload"), payloads),
    st.tuples(st.just("op"), st.sampled_from(OPS), payloads),
    st.tuples(st.just("rq"), st.integers(0, 2 ** 32 - 1)),
    st.just(("rq-other",)),
    st.tuples(st.just("tx"), st.integers(1, 2 ** 32 - 1)),
    st.just(("twice",)),
    st.tuples(st.just("split"), st.integers(1, 40)),
    st.tuples(st.just("strays"), st.integers(1, 200)),
    st.tuples(st.just("events"), st.integers(1, 3000)),
    st.just(("drop",)),
    st.tuples(st.just("truncate"), st.integers(1, 30)),
    st.just(("oversize",)),
    st.just(("close",)),
)


def honest_payload(request: Packet) -> bytes:
    op, payload = request.op, request.payload
    if op == Op.READ:
        return b"v:" + payload.rstrip(NUL)
    if op == Op.DIRECTORY:  # a small tree: /k/N/a and /k/N/b are leaves
        return b"a\x00b\x00" if payload.count(b"/") < 3 else b""
    if op == Op.GET_PERMS:
        return b"n0\x00b1\x00"
    if op == Op.TRANSACTION_START:
        return b"7\x00"
    if op == Op.GET_DOMAIN_PATH:
        return b"/local/domain/" + payload.rstrip(NUL) + NUL
    if op == Op.IS_DOMAIN_INTRODUCED:
        return b"T\x00"
    if op == Op.DIRECTORY_PART:
        return b"3\x00a\x00\x00"
    return b"OK\x00"


class Hostile:
    """Answers the n-th request with the n-th action of the script."""

    def __init__(self, script: List[Tuple[Any, ...]]) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.received: List[Packet] = []
        #: (op, rq_id) -> payloads sent in a frame with that header
        self.sent: Dict[Tuple[int, int], Set[bytes]] = {}

    def send(self, conn: FakeConnection, op: int, rq_id: int, tx_id: int,
             payload: bytes) -> None:
        self.sent.setdefault((op, rq_id), set()).add(payload)
        conn.send_raw(HEADER.pack(op, rq_id, tx_id, len(payload)) + payload)

    def __call__(self, conn: FakeConnection, request: Packet) -> None:
        with self.lock:
            self.received.append(request)
            action = self.script[(len(self.received) - 1) % len(self.script)]
            others = [r.rq_id for r in self.received]
        kind = action[0]
        rq, tx = request.rq_id, request.tx_id
        answer = honest_payload(request)
        if kind == "honest" or kind == "twice":
            self.send(conn, request.op, rq, tx, answer)
            if request.op == Op.WATCH:  # the watch's first event
                self.send(conn, Op.WATCH_EVENT, 0, 0, request.payload)
            if kind == "twice":
                self.send(conn, request.op, rq, tx, answer)
        elif kind == "payload":
            self.send(conn, request.op, rq, tx, action[1])
        elif kind == "op":
            self.send(conn, action[1], rq, tx, action[2])
        elif kind == "rq":
            self.send(conn, request.op, action[1], tx, answer)
        elif kind == "rq-other":  # the reply goes under another's id
            self.send(conn, request.op, others[len(others) // 2], tx, answer)
        elif kind == "tx":
            self.send(conn, request.op, rq, action[1], answer)
        elif kind == "split":
            frame = HEADER.pack(request.op, rq, tx, len(answer)) + answer
            self.sent.setdefault((request.op, rq), set()).add(answer)
            cut = min(action[1], len(frame) - 1)
            conn.send_raw(frame[:cut])
            time.sleep(0.001)  # two reads, not one: reassembly is exercised
            conn.send_raw(frame[cut:])
        elif kind == "strays":
            for n in range(action[1]):
                self.send(conn, Op.READ, 10 ** 6 + n, 0, b"stray")
            self.send(conn, request.op, rq, tx, answer)
        elif kind == "events":
            event = bytes(Packet(Op.WATCH_EVENT, b"/x\x00nobody\x00"))
            conn.send_raw(event * action[1])
            self.send(conn, Op.WATCH_EVENT, 0, 0, b"/w\x00tok-9\x00")
            self.send(conn, request.op, rq, tx, answer)
        elif kind == "drop":
            pass
        elif kind == "truncate":
            frame = HEADER.pack(request.op, rq, tx, len(answer)) + answer
            conn.send_raw(frame[:min(action[1], len(frame) - 1)])
            conn.close()
        elif kind == "oversize":
            conn.send_raw(HEADER.pack(request.op, rq, tx, 5000))
        elif kind == "close":
            conn.close()


def check_shape(name: str, value: Any) -> None:
    """The value a successful call returned has its operation's shape."""
    if name in ("read", "get_domain_path"):
        assert type(value) is bytes
        if name == "get_domain_path":
            assert value.startswith(b"/") and NUL not in value
    elif name in ("list", "get_perms"):
        assert type(value) is list and all(type(v) is bytes and v
                                           for v in value)
    elif name in ("exists", "is_domain_introduced"):
        assert type(value) is bool
    elif name == "transaction":
        assert type(value) is int and 1 <= value <= TX_ID_MAX
    elif name == "walk":
        assert type(value) is list
        for node_path, node_value, children in value:
            assert type(node_path) is bytes and type(node_value) is bytes
            check_shape("list", children)
    else:
        assert value is None, (name, value)


CALLS = ["read", "write", "list", "exists", "get_perms", "get_domain_path",
         "is_domain_introduced", "transaction", "mkdir", "monitor", "walk"]


def call_arguments(name: str, index: int, path: bytes
                   ) -> Tuple[Tuple[Any, ...], int]:
    """A plain call's arguments, and how many requests it makes."""
    if name in ("get_domain_path", "is_domain_introduced"):
        return (index,), 1
    if name == "write":
        return (path, b"w"), 1
    return (path,), 6 if name == "walk" else 1  # a walk: 3 nodes, 2 each


def run_call(name: str, index: int, router: Router,
             results: Dict[int, Any]) -> None:
    start = time.monotonic()
    path = b"/k/%d" % index
    outcome: Any = None
    requests = 1
    client = Client(router=router, timeout=TIMEOUT)
    try:
        client.connect()
        if name == "monitor":
            requests = 2
            monitor = client.monitor()
            token = b"tok-%d" % index
            monitor.watch(path, token)
            event = monitor.get(timeout=TIMEOUT)
            assert isinstance(event, Event) and event.token == token, event
            outcome = ("value", event)
        elif name == "transaction":
            requests = 3
            tx_id = client.transaction()
            check_shape(name, tx_id)
            client.write(path, b"t")
            outcome = ("value", client.commit())
        else:
            args, requests = call_arguments(name, index, path)
            value = getattr(client, name)(*args)
            if name == "walk":
                value = list(value)
            check_shape(name, value)
            outcome = ("value", value)
    except PyXSError as exc:
        outcome = ("error", exc)
    except BaseException as exc:  # what this test exists to catch
        outcome = ("escaped", exc)
    finally:
        client.tx_id = 0  # an unfinished transaction is not this test's
        client.close()
    results[index] = (name, path, outcome, time.monotonic() - start,
                      requests)


class RouterLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def fuzzed(test: Any) -> Any:
    """The settings and strategies of both fuzzers (this one and
    test_hostile_daemon_aio's): ``test(script, calls)``."""
    return settings(
        max_examples=int(os.environ.get("PYXS_FUZZ_EXAMPLES", 30)),
        deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow])(given(
            script=st.lists(actions, min_size=1, max_size=6),
            calls=st.lists(st.sampled_from(CALLS), min_size=1,
                           max_size=5))(test))


@fuzzed
def test_hostile_daemon(script, calls):
    hostile = Hostile(script)
    log = RouterLog()
    logger = logging.getLogger("pyxs.router")
    logger.addHandler(log)
    try:
        with FakeDaemon(hostile) as fake:
            holder = Client(unix_socket_path=fake.socket_path,
                            timeout=TIMEOUT)
            holder.connect()  # keeps the router up while threads come and go
            results: Dict[int, Any] = {}
            threads = [threading.Thread(target=run_call,
                                        args=(name, i, holder.router,
                                              results))
                       for i, name in enumerate(calls)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(JOIN)
                assert not thread.is_alive(), "a call hung: %r" % script
            holder.close()
            holder.router.thread.join(JOIN)
            assert not holder.router.thread.is_alive()
    finally:
        logger.removeHandler(log)
    assert not log.records, [r.getMessage() for r in log.records]
    check_results(hostile, results)


def check_results(hostile: Hostile, results: Dict[int, Any]) -> None:
    """The properties of the module docstring, for every call made."""
    reads = {r.payload: r.rq_id for r in hostile.received
             if r.op == Op.READ}
    for name, path, outcome, elapsed, requests in results.values():
        kind, value = outcome
        assert kind != "escaped", "%s raised %r" % (name, value)
        assert elapsed < requests * (TIMEOUT + SLACK), (name, elapsed)
        if kind == "error":
            assert len(str(value)) < 300  # never a 4 KB dump
        if kind == "value" and name == "read":
            rq_id = reads[path + NUL]
            assert value in hostile.sent.get((Op.READ, rq_id), ()), \
                "%s got a reply that was not sent under its id" % path
