"""pyxs._compat against Xen's own ``xen.lowlevel.xs``, step by step.

Each scenario runs twice, on two fresh Xen 4.17 C xenstored daemons: once
through the real binding (Debian's xen-utils-4.17 build, in a child
process, see :mod:`bindingside`), once through ``pyxs._compat``. Every
step's outcome must be equal, types included (the result, or the
exception's type and args), and so must the two stores afterwards (every
node's value and permissions).

A step labelled with a key of :data:`KNOWN_DIFFERENCES` must differ (the
table stays honest), and docs/compat.rst must list every such key with
its reason. Where this machine cannot run the binding (no CPython 3.11),
the tests say so in the run's summary; with ``CI`` set they fail instead.
"""

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from bindingside import (
    BindingSide,
    PyxsSide,
    TokenRef,
    binding_python,
    find_binding,
)

from pyxs import Client, PyXSError
from pyxs.testing import XenStoreDaemon, find_xen

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10.0  # seconds an awaited event may take; never a delay

#: Steps whose outcome differs on purpose, with the reason. Each key is
#: also listed in docs/compat.rst.
KNOWN_DIFFERENCES: Dict[str, str] = {
    "pyxs04-bytes-path": (
        "bytes paths are pyxs 0.4's form: the binding refuses them "
        "(TypeError), pyxs._compat takes them and answers in bytes"),
    "pyxs04-handle": (
        "None, 0, ints and bytes as transaction handles are pyxs 0.4's "
        "forms: the binding refuses them (TypeError)"),
    "pyxs04-perm-strings": (
        "a list of permission strings (pyxs 0.4's form) makes the binding "
        "raise SystemError (a bug in it); pyxs._compat sets them"),
    "stale-event": (
        "the binding keeps the events of a removed watch queued: "
        "fileno() stays readable and check_watch() then raises "
        "Error(EAGAIN); pyxs._compat drops them with the watch"),
    "arg-count": (
        "a call with too few or too many arguments raises TypeError on "
        "both sides, with Python's wording on ours"),
}


def _binding_env() -> Tuple[Optional[str], str, Dict[str, str]]:
    """(interpreter, binding directory, environment) or a reason."""
    xen = find_xen()
    pythonpath = find_binding(xen.root)
    if pythonpath is None:
        return None, "%s ships no xen.lowlevel.xs for CPython 3.11" % xen, {}
    python = binding_python()
    if python is None:
        return None, ("xen.lowlevel.xs of %s is built for CPython 3.11, and "
                      "no python3.11 is installed here" % xen), {}
    return python, pythonpath, xen.environ()


@pytest.fixture(scope="module")
def binding() -> Iterator[BindingSide]:
    python, where, env = _binding_env()
    if python is None:
        message = "binding differential NOT RUN: " + where
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    side = BindingSide(python, where, env)
    side.where = "xen.lowlevel.xs in " + where
    yield side
    side.stop()


class Recorder:
    """Runs a scenario on one side, recording every step's outcome."""

    def __init__(self, side: Any, socket_path: str) -> None:
        self.side = side
        self.socket_path = socket_path
        self.steps: List[Tuple[str, Optional[str], Any]] = []

    def open(self, hid: int = 0) -> None:
        self._record("open(%d)" % hid, None, ("open", hid, self.socket_path))

    def __call__(self, hid: int, method: str, *args: Any,
                 known: Optional[str] = None, **kwargs: Any) -> Any:
        what = "%d.%s%r%s" % (hid, method, args,
                              " %r" % kwargs if kwargs else "")
        outcome = self._record(what, known,
                               ("call", hid, method, args, kwargs))
        if outcome[0] == "ok":
            return _untyped(outcome[1])
        return None

    def readable(self, hid: int, timeout: float = 0.0) -> Any:
        outcome = self._record("%d.readable(%g)" % (hid, timeout), None,
                               ("readable", hid, timeout))
        return _untyped(outcome[1]) if outcome[0] == "ok" else None

    def _record(self, what: str, known: Optional[str],
                request: Tuple[Any, ...]) -> Any:
        if known is not None:
            assert known in KNOWN_DIFFERENCES, known
        outcome = self.side.request(request)
        self.steps.append((what, known, outcome))
        return outcome


def _untyped(value: Any) -> Any:
    kind, inner = value
    if kind in ("list", "tuple"):
        items = [_untyped(v) for v in inner]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {eval(k): _untyped(v) for k, v in inner}  # noqa: S307
    return inner


def dump_store(socket_path: str) -> List[Tuple[bytes, bytes, List[bytes]]]:
    """Every node with its value and permissions."""
    nodes = []
    with Client(unix_socket_path=socket_path, timeout=30) as c:
        stack = [b"/"]
        while stack:
            path = stack.pop()
            try:
                nodes.append((path, c.read(path), c.get_perms(path)))
                children = c.list(path)
            except PyXSError:
                continue
            base = path.rstrip(b"/")
            stack.extend(base + b"/" + name for name in children)
    return sorted(nodes)


Scenario = Callable[[Recorder], None]


def differential(binding: BindingSide, scenario: Scenario) -> None:
    """Runs ``scenario`` on both sides and compares them."""
    recorded = []
    for side in (binding, PyxsSide()):
        with XenStoreDaemon("xenstored") as daemon:
            recorder = Recorder(side, daemon.socket_path)
            try:
                scenario(recorder)
            finally:
                side.close()
            recorded.append((recorder.steps, dump_store(daemon.socket_path)))
    (theirs, their_store), (ours, our_store) = recorded
    problems = []
    for index, (step, mine) in enumerate(zip(theirs, ours)):
        (what, known, outcome), (_, _, my_outcome) = step, mine
        if known is None and outcome != my_outcome:
            problems.append("step %d %s:\n  binding: %r\n  pyxs:    %r"
                            % (index, what, outcome, my_outcome))
        elif known is not None and outcome == my_outcome:
            problems.append("step %d %s: known difference %r no longer "
                            "differs (%r)" % (index, what, known, outcome))
    if len(theirs) != len(ours):
        problems.append("%d steps on the binding, %d on pyxs"
                        % (len(theirs), len(ours)))
    assert not problems, "\n".join(problems)
    assert our_store == their_store


def scenario_nodes(s: Recorder) -> None:
    s.open()
    s(0, "write", "", "/a/b", "text")
    s(0, "write", "", "/a/bin", b"\x00\xff\x01")
    s(0, "write", "", "/a/nul", "x\x00y")
    s(0, "write", "", "/a/empty", "")
    s(0, "write", "", "/a/caf", "caf\u00e9")
    for path in ("/a/b", "/a/bin", "/a/nul", "/a/empty", "/a/caf", "/a",
                 "/missing", "/missing/deeper"):
        s(0, "read", "", path)
    s(0, "ls", "", "/a")
    s(0, "ls", "", "/missing")
    s(0, "ls", "", "/")
    s(0, "mkdir", "", "/m/deep/node")
    s(0, "mkdir", "", "/a/b")
    s(0, "read", "", "/a/b")
    s(0, "rm", "", "/m/deep")
    s(0, "rm", "", "/m/deep")
    s(0, "rm", "", "/no/such/parent")
    s(0, "ls", "", "/m")
    s(0, "write", "", "relative/node", "r")
    s(0, "read", "", "relative/node")
    s(0, "read", "", "/local/domain/0/relative/node")
    for bad in ("/a//b", "/a/", "", "/caf\u00e9", "/sp ace",
                "/a/" + "x" * 3100):
        s(0, "write", "", bad, "v")
        s(0, "read", "", bad)
    s(0, "write", "", "/big", "x" * 5000)
    s(0, "write", "", "/big", "x" * 4000)
    s(0, "read", "", "/big")


def scenario_bytes_paths(s: Recorder) -> None:
    s.open()
    s(0, "write", "", "/p/q", "v")
    s(0, "write", "", b"/p/r", b"v", known="pyxs04-bytes-path")
    s(0, "read", "", b"/p/q", known="pyxs04-bytes-path")
    s(0, "ls", "", b"/p", known="pyxs04-bytes-path")
    s(0, "rm", "", b"/p/r", known="pyxs04-bytes-path")
    s(0, "ls", "", "/p")


def scenario_handles(s: Recorder) -> None:
    s.open()
    for t in ("", "0", "zz", "0x0", "  0", "+0", "100000000", "0x"):
        s(0, "write", t, "/h", "v")  # all of them: no transaction
    for t in ("-1", "5", "ffffffff", "1 garbage", "0x7"):
        s(0, "write", t, "/h/%s" % t.strip().replace(" ", "_"), "v")
        s(0, "read", t, "/h")
    t = s(0, "transaction_start")
    for form in (t, t.upper(), "0x" + t, " " + t, t + "zz"):
        s(0, "write", form, "/h/in-tx", form)
    s(0, "read", "", "/h/in-tx")
    s(0, "transaction_end", t)
    s(0, "read", "", "/h/in-tx")
    for t in (None, 0, b"", 7, b"7"):
        s(0, "read", t, "/h", known="pyxs04-handle")
    s(0, "read", 1.5, "/h")
    s(0, "read", "a\x00", "/h")
    s(0, "read", "", "/h\x00")


def scenario_transactions(s: Recorder) -> None:
    s.open(0)
    s.open(1)
    s(0, "write", "", "/t/x", "0")
    t = s(0, "transaction_start")
    s(0, "write", t, "/t/x", "in-tx")
    s(0, "read", t, "/t/x")
    s(0, "read", "", "/t/x")
    s(0, "ls", t, "/t")
    s(0, "transaction_end", t)
    s(0, "read", "", "/t/x")
    s(0, "transaction_end", t)  # gone now
    s(0, "write", t, "/t/x", "late")
    # abort
    t = s(0, "transaction_start")
    s(0, "mkdir", t, "/t/aborted")
    s(0, "transaction_end", t, 1)
    s(0, "read", "", "/t/aborted")
    t = s(0, "transaction_start")
    s(0, "rm", t, "/t/x")
    s(0, "transaction_end", transaction=t, abort=True)
    s(0, "read", "", "/t/x")
    # conflict with another handle
    t = s(0, "transaction_start")
    s(0, "read", t, "/t/x")
    s(1, "write", "", "/t/x", "other")
    s(0, "write", t, "/t/x", "mine")
    s(0, "transaction_end", t)
    s(0, "read", "", "/t/x")
    # two at once on one handle, ended out of order
    t1 = s(0, "transaction_start")
    t2 = s(0, "transaction_start")
    s(0, "write", t1, "/t/one", "1")
    s(0, "write", t2, "/t/two", "2")
    s(0, "transaction_end", t2)
    s(0, "transaction_end", t1)
    s(0, "ls", "", "/t")
    # another handle's transaction is the daemon's to judge
    t = s(0, "transaction_start")
    s(1, "write", t, "/t/foreign", "v")
    s(0, "transaction_end", t, abort=1)
    s(0, "transaction_end", "")
    s(0, "transaction_end", "", abort="x")
    s(0, "transaction_end", 1.5)


def scenario_permissions(s: Recorder) -> None:
    s.open()
    s(0, "write", "", "/p", "v")
    s(0, "get_permissions", "", "/p")
    s(0, "get_permissions", "", "/missing")
    for perms in (
            [{"dom": 0, "read": 1}], [{"dom": 5}], [{"dom": 5, "write": 1}],
            [{"dom": 5, "read": True}], [{"dom": 0}, {"dom": 5, "read": 1}],
            [{"dom": 3, "read": 1}, {"dom": 0}],
            [{"dom": 1, "read": 1, "write": 1}, {"dom": 2, "write": 1}],
            [{"dom": 0, "read": 5}], [{"dom": 2 ** 31 - 1}], [{"dom": -1}],
            [{"dom": 7}, {"dom": 0, "write": True}]):
        s(0, "set_permissions", "", "/p", perms)
        s(0, "get_permissions", "", "/p")
    for bad in ([], "x", ({"dom": 1},), [{"dom": 2 ** 31}],
                [{"dom": 0, "exec": 1}], [{"read": 1}], [{"dom": "x"}],
                [{"dom": 1.5}], [{1: 2}], None):
        s(0, "set_permissions", "", "/p", bad)
    s(0, "set_permissions", "", "/p", ["n0", "r5"],
      known="pyxs04-perm-strings")
    s(0, "get_permissions", "", "/p", known="pyxs04-perm-strings")
    s(0, "set_permissions", "", "/missing", [{"dom": 0}])
    t = s(0, "transaction_start")
    s(0, "set_permissions", t, "/p", [{"dom": 0, "read": 1}])
    s(0, "get_permissions", t, "/p")
    s(0, "transaction_end", t)
    s(0, "get_permissions", "", "/p")


def scenario_watches(s: Recorder) -> None:
    s.open(0)
    s.open(1)
    s(0, "check_watch")
    s.readable(0)
    s(0, "watch", "/w", TokenRef(1))
    s.readable(0, WAIT)
    s(0, "read_watch")  # the event of setting the watch
    s(0, "check_watch")
    s.readable(0)
    s(0, "write", "", "/w/a", "1")  # this handle's write: its event is in
    s.readable(0)
    s(0, "check_watch")
    s(1, "write", "", "/w/b", "2")  # another handle's: wait for it
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "watch", "/other", TokenRef(1))  # the same token on a second path
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "watch", "/w", TokenRef(2))  # a second token on the same path
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "watch", "/w", TokenRef(2))  # twice: the daemon refuses
    s(0, "unwatch", "/nowhere", TokenRef(2))
    s(0, "unwatch", "/w", TokenRef(3))
    s(0, "unwatch", "/w", TokenRef(2))
    s(0, "write", "", "/w/c", "3")
    s.readable(0)
    s(0, "check_watch")  # only token 1 is left on /w
    s(0, "check_watch")
    s(0, "watch", "@foo", TokenRef(4))  # the daemon's to judge
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "watch", "@introduceDomain", TokenRef(5))
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "watch", "/a//b", TokenRef(6))
    s(0, "watch", "", TokenRef(6))
    s(0, "watch", 5, TokenRef(6))
    s(0, "watch", "/w", "a str token")
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "unwatch", "/w", "a str token")
    # events of a transaction arrive on commit
    t = s(1, "transaction_start")
    s(1, "write", t, "/w/tx", "v")
    s.readable(0)
    s(1, "transaction_end", t)
    s.readable(0, WAIT)
    s(0, "read_watch")


def scenario_stale_events(s: Recorder) -> None:
    s.open()
    s(0, "watch", "/w", TokenRef(1))
    s.readable(0, WAIT)
    s(0, "read_watch")
    s(0, "write", "", "/w/a", "1")
    s(0, "unwatch", "/w", TokenRef(1))
    s(0, "check_watch", known="stale-event")
    s(0, "check_watch")


def scenario_domains(s: Recorder) -> None:
    s.open()
    for domid in (0, 7, -1, True, 2 ** 31, 1.0, "1"):
        s(0, "get_domain_path", domid)
    s(0, "introduce_domain", 3, 2, 1)
    s(0, "introduce_domain", 3, 2 ** 63, 1)
    s(0, "release_domain", 77)
    s(0, "release_domain", 3)
    s(0, "resume_domain", 77)
    s(0, "set_target", 1, 2)
    s(0, "set_target", "1", 2)


def scenario_bad_arguments(s: Recorder) -> None:
    s.open()
    s(0, "write", "", "/v", 5)
    s(0, "write", "", "/v", bytearray(b"x"))
    s(0, "write", "", "/v", None)
    for method in ("read", "ls", "mkdir", "rm", "get_permissions"):
        s(0, method, "", 5)
        s(0, method, "", None)
        s(0, method, 5.0, "/v")
        s(0, method, "", known="arg-count")
    s(0, "read", "", "/v", "extra", known="arg-count")


def scenario_closed_handle(s: Recorder) -> None:
    s.open()
    s(0, "write", "", "/c", "v")
    t = s(0, "transaction_start")
    s(0, "watch", "/c", TokenRef(1))
    s(0, "close")
    for method, args in (("read", ("", "/c")), ("write", ("", "/c", "x")),
                         ("ls", ("", "/")), ("mkdir", ("", "/d")),
                         ("rm", ("", "/c")),
                         ("get_permissions", ("", "/c")),
                         ("set_permissions", ("", "/c", [{"dom": 0}])),
                         ("watch", ("/c", TokenRef(2))),
                         ("unwatch", ("/c", TokenRef(1))),
                         ("read_watch", ()), ("check_watch", ()),
                         ("transaction_start", ()),
                         ("transaction_end", (t,)),
                         ("get_domain_path", (0,)), ("close", ())):
        s(0, method, *args)


SCENARIOS = {name[len("scenario_"):]: func
             for name, func in sorted(globals().items())
             if name.startswith("scenario_")}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_as_the_binding(binding: BindingSide, name: str,
                             record_property: Any) -> None:
    differential(binding, SCENARIOS[name])
    record_property("summary", "binding differential: %d scenarios "
                    "compared with %s" % (len(SCENARIOS), binding.where))


def test_same_public_methods(binding: BindingSide) -> None:
    from pyxs._compat import xs
    with XenStoreDaemon("xenstored") as daemon:
        recorder = Recorder(binding, daemon.socket_path)
        recorder.open()
        theirs = recorder(0, "__dir__")
        binding.close()
    public = sorted(n for n in theirs if not n.startswith("_"))
    ours = sorted(n for n in dir(xs) if not n.startswith("_"))
    assert ours == public
    assert "check_watch" in ours


def test_known_differences_are_documented() -> None:
    with open(os.path.join(HERE, "..", "docs", "compat.rst")) as handle:
        text = handle.read()
    missing = [key for key in KNOWN_DIFFERENCES if "``%s``" % key not in text]
    assert not missing, "docs/compat.rst does not explain %s" % missing
