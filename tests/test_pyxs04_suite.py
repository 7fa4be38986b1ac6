"""pyxs 0.4's own test modules, run against pyxs 0.4.1 and against us.

The modules (fetched by :mod:`pyxs04`, never vendored) run twice in child
processes: with pyxs 0.4.1 first on ``sys.path``, and with this checkout's
pyxs. Every test they hold must have the same outcome on both, except the
ones in :data:`EXPECTED`. Those marked ``@virtualized`` want a Xen host;
the second pair of runs lifts that marker and points them (through
``XENSTORED_PATH``) at a fresh C xenstored each, with Xen's own
``xen.lowlevel.xs`` importable where it fits this Python, so that 0.4's
``test_api_completeness`` compares method sets with it.

Fetching needs PyPI and Debian's archive (as CI has): if that fails, the
tests fail saying why; they never skip.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest
import pyxs04

from pyxs.testing import ProvisionError, XenStoreDaemon, find_xen

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Tests of pyxs 0.4 whose outcome differs on purpose, with the reason
#: (docs/compat.rst says the same).
EXPECTED: Dict[str, str] = {
    "tests.test__compat::test_transaction_start": (
        "transaction_start() returns the binding's str handle ('1'), not "
        "0.4's bytes: the one deliberate difference from pyxs 0.4"),
    "tests.test__compat::test_api_completeness": (
        "0.4.1's xs lacks the binding's check_watch(); ours has every "
        "method of xen.lowlevel.xs (runs where the binding imports)"),
}


@pytest.fixture(scope="module")
def suite() -> pyxs04.Pyxs04:
    try:
        return pyxs04.provision()
    except ProvisionError as exc:
        pytest.fail("pyxs 0.4's test suite could NOT RUN: %s" % exc)


def _compare(theirs: Dict[str, str], ours: Dict[str, str],
             output: str) -> List[str]:
    assert ours, "no pyxs 0.4 test ran against us:\n" + output
    assert sorted(ours) == sorted(theirs), \
        "different tests collected:\n" + output
    problems = []
    for name in sorted(ours):
        same = ours[name] == theirs[name]
        if name in EXPECTED:
            continue
        if not same:
            problems.append("%s: %s with pyxs 0.4.1, %s with us"
                            % (name, theirs[name], ours[name]))
    assert not problems, "\n".join(problems) + "\n\n" + output
    return pyxs04.failures(ours)


def _counts(outcomes: Dict[str, str]) -> str:
    return ", ".join("%d %s" % (list(outcomes.values()).count(kind), kind)
                     for kind in ("passed", "failed", "skipped"))


def test_pyxs04_tests_as_shipped(suite: pyxs04.Pyxs04,
                                 record_property: Any, tmp_path: Any) -> None:
    # No Xen here: their @virtualized tests skip, on both sides alike.
    env = {"XENSTORED_PATH": str(tmp_path / "no-daemon")}
    theirs, _ = pyxs04.run_suite(suite, [suite.lib], env, virtualized=False)
    ours, output = pyxs04.run_suite(suite, [REPO], env, virtualized=False)
    assert pyxs04.failures(ours) == [], output
    _compare(theirs, ours, output)
    record_property("summary", "pyxs 0.4 tests as shipped: %s (pyxs 0.4.1: "
                    "%s)" % (_counts(ours), _counts(theirs)))


@pytest.fixture(scope="module")
def virtualized_runs(suite: pyxs04.Pyxs04
                     ) -> Tuple[Dict[str, str], Dict[str, str], str]:
    xen = find_xen()
    binding = pyxs04.binding_path(xen.root)
    extra = [binding] if binding else []
    runs = []
    for lib in (suite.lib, REPO):
        with XenStoreDaemon("xenstored") as daemon:
            with daemon.client() as c:  # as on a Xen host: dom0's home
                c.mkdir(b"/local/domain/0")
            env = dict(xen.environ(), XENSTORED_PATH=daemon.socket_path)
            runs.append(pyxs04.run_suite(suite, [lib] + extra, env,
                                         virtualized=True))
    (theirs, _), (ours, output) = runs
    return theirs, ours, output


def test_pyxs04_tests_against_xenstored(
        virtualized_runs: Tuple[Dict[str, str], Dict[str, str], str],
        record_property: Any) -> None:
    theirs, ours, output = virtualized_runs
    both = _compare(theirs, ours, output)
    # Their own failures on a Unix socket (XenBusConnection has no device
    # here) are documented in docs/compat.rst; a new one must be looked at.
    assert [t for t in both if "XenBusConnection" not in t and
            t not in EXPECTED] == EXPECTED_ON_XENSTORED, output
    record_property("summary", "pyxs 0.4 tests on C xenstored: %s (pyxs "
                    "0.4.1: %s)" % (_counts(ours), _counts(theirs)))


#: pyxs 0.4's own tests that fail against a real C xenstored with 0.4.1 and
#: with us alike, because of the tests themselves (see docs/compat.rst).
EXPECTED_ON_XENSTORED = [
    # leaves its transaction open: the fixture's exit then raises
    "tests.test_client::test_nested_transaction[UnixSocketConnection]",
    "tests.test_client::test_transaction[UnixSocketConnection]",
    # expects a conflict from a write before the transaction read the node
    "tests.test_client::test_transaction_commit_retry[UnixSocketConnection]",
]


def test_expected_differences_still_differ(
        virtualized_runs: Tuple[Dict[str, str], Dict[str, str], str]) -> None:
    theirs, ours, output = virtualized_runs
    for name in EXPECTED:
        if ours.get(name) == "skipped":  # no binding for this Python
            continue
        assert ours.get(name) != theirs.get(name), (name, output)


# -- the names of every module ----------------------------------------------

_SURFACE = r'''
import importlib, inspect, json, sys, types
out = {}
aliases = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for attr in dir(module):
        if inspect.isclass(getattr(module, attr)):
            aliases.setdefault(id(getattr(module, attr)), set()).add(attr)
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    names = {}
    for attr in dir(module):
        value = getattr(module, attr)
        if attr.startswith("__") or isinstance(value, types.ModuleType):
            continue
        if str(getattr(value, "__module__", "pyxs")).split(".")[0] != "pyxs" \
                and not isinstance(value, (int, str, bytes, tuple)):
            continue  # imported from the standard library
        entry = {}
        if inspect.isclass(value):
            entry["members"] = sorted(
                a for a in dir(value) if not a.startswith("__") or
                a in ("__enter__", "__exit__", "__getitem__", "__setitem__",
                      "__delitem__", "__copy__"))
            # Bases by the names this module gives them (aliases count),
            # and the built-in ones by theirs.
            # Bases by their names and by every name the modules give
            # them (aliases count); private ones (namedtuple bases) not.
            entry["bases"] = sorted(
                {c.__name__ for c in value.__mro__
                 if not c.__name__.startswith("_")} |
                {n for c in value.__mro__ for n in aliases.get(id(c), ())})
        names[attr] = entry
    out[name] = names
print(json.dumps(out))
'''

MODULES = ["pyxs", "pyxs.client", "pyxs.connection", "pyxs._internal",
           "pyxs._compat", "pyxs.exceptions", "pyxs.helpers"]

#: Names of pyxs 0.4.1 left out on purpose (docs/compat.rst says why).
LEFT_OUT = {
    "pyxs._internal": {"_rq_id", "Packet._struct"},
    "pyxs.client": {"_re_7bit_ascii", "_condition_wait", "check_path",
                    "ConnectionError", "Event",
                    "check_perms", "check_watch_path", "next_rq_id",
                    "Packet._struct", "RVar.condition", "RVar.target",
                    "UnixSocketConnection.transport",
                    "XenBusConnection.transport",
                    "UnixSocketConnection.path", "XenBusConnection.path"},
    "pyxs.connection": {"Packet._struct", "UnixSocketConnection.transport",
                        "XenBusConnection.transport",
                        "PacketConnection.transport",
                        "UnixSocketConnection.path", "XenBusConnection.path",
                        "PacketConnection.path"},
    "pyxs.helpers": {"_codeerror", "_re_path", "_re_perms",
                     "_re_watch_path"},
}


def _surface(pythonpath: str) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    result = subprocess.run([sys.executable, "-c", _SURFACE] + MODULES,
                            capture_output=True, text=True, env=env,
                            cwd=pythonpath, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_every_pyxs04_name_exists(suite: pyxs04.Pyxs04) -> None:
    theirs, ours = _surface(suite.lib), _surface(REPO)
    missing = []
    for module, names in theirs.items():
        skip = LEFT_OUT.get(module, set())
        for name, entry in names.items():
            if name in skip:
                continue
            if name not in ours[module]:
                missing.append("%s.%s" % (module, name))
                continue
            mine = ours[module][name]
            for member in entry.get("members", ()):
                if "%s.%s" % (name, member) not in skip and \
                        member not in mine.get("members", ()):
                    missing.append("%s.%s.%s" % (module, name, member))
            for base in entry.get("bases", ()):
                if base not in mine.get("bases", ()) and \
                        "%s.%s" % (name, base) not in skip:
                    missing.append("%s.%s is not a %s" % (module, name,
                                                          base))
    assert not missing, "pyxs 0.4.1 names we lack: %s" % missing

