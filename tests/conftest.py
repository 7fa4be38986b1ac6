"""Test configuration: every behavioural test runs against real daemons.

``PYXS_TEST_DAEMONS`` (comma-separated) picks the daemons; by default all
of Xen's C xenstored, oxenstored and pyxs's embedded daemon. A daemon that
cannot be started fails its tests with the reason: nothing is skipped.
"""

import collections
import os
from typing import Any, Dict, Iterator

import pytest

from pyxs import Client
from pyxs.testing import DAEMON_KINDS, XenStoreDaemon

pytest_plugins = ["pyxs.testing.pytest_plugin"]

DEFAULT_DAEMONS = "xenstored,oxenstored,embedded"


def selected_daemons() -> list:
    names = os.environ.get("PYXS_TEST_DAEMONS", DEFAULT_DAEMONS).split(",")
    names = [n.strip() for n in names if n.strip()]
    unknown = set(names) - set(DAEMON_KINDS)
    if unknown:
        raise pytest.UsageError("unknown daemon(s) in PYXS_TEST_DAEMONS: %s"
                                % ", ".join(sorted(unknown)))
    return names


def pytest_generate_tests(metafunc: Any) -> None:
    if "daemon_kind" in metafunc.fixturenames:
        metafunc.parametrize("daemon_kind", selected_daemons())


@pytest.fixture
def daemon(daemon_kind: str) -> Iterator[XenStoreDaemon]:
    """A fresh daemon of each selected kind, in its own directory."""
    with XenStoreDaemon(daemon_kind) as running:
        yield running


@pytest.fixture
def client(daemon: XenStoreDaemon) -> Iterator[Client]:
    """A connected client on a fresh daemon."""
    with daemon.client(timeout=30) as connected:
        yield connected


def expect(kind: str, table: Dict[str, Any], default: Any = None) -> Any:
    """The value a daemon is known to give, where daemons differ.

    Each entry of ``table`` besides "default" is a documented difference.
    """
    return table.get(kind, table.get("default", default))


_RESULTS: Dict[str, collections.Counter] = collections.defaultdict(
    collections.Counter)


_NOTES: Dict[str, None] = {}  # lines for the summary, in order, once


def pytest_runtest_logreport(report: Any) -> None:
    for name, value in getattr(report, "user_properties", ()):
        if name == "summary":  # record_property("summary", line)
            _NOTES[value] = None
    if report.skipped and "NOT RUN" in str(report.longrepr):
        _NOTES[str(report.longrepr[2] if isinstance(report.longrepr, tuple)
                   else report.longrepr)] = None
    if report.when != "call" and not (report.when == "setup" and
                                      report.outcome != "passed"):
        return
    kind = "(no daemon)"
    for name in DAEMON_KINDS:
        if "[%s" % name in report.nodeid or "-%s]" % name in report.nodeid \
                or "-%s-" % name in report.nodeid:
            kind = name
    _RESULTS[kind][report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _NOTES:
        terminalreporter.section("notes")
        for line in _NOTES:
            terminalreporter.write_line(line)
    if not _RESULTS:
        return
    terminalreporter.section("tests per daemon")
    for kind in sorted(_RESULTS):
        counts = _RESULTS[kind]
        terminalreporter.write_line("%-12s %s" % (kind, ", ".join(
            "%d %s" % (n, outcome) for outcome, n in sorted(counts.items()))))
