"""Test configuration: every behavioural test runs against real daemons.

The ``daemon_kind`` parameter is a daemon's label: ``<kind>-<release>`` for
Xen's daemons (``xenstored-4.17`` ... ``xenstored-4.22``, see
:data:`pyxs.testing.XEN_RELEASES`) and ``embedded`` for pyxs's own.
``PYXS_TEST_DAEMONS`` (comma-separated) picks them; each entry is a label,
a kind (every release of it: ``xenstored``) or a release (every daemon of
it: ``4.20``). By default all of them run; ``--xen RELEASE`` (or
``PYXS_TEST_XEN``) keeps Xen's daemons of that release only. A daemon that
cannot be started fails its tests with the reason, and the summary at the
end says which could not be provisioned: nothing is skipped.
"""

import collections
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import pytest

from pyxs import Client
from pyxs.testing import (
    XEN_RELEASES,
    ProvisionError,
    XenStoreDaemon,
    release_kinds,
)

pytest_plugins = ["pyxs.testing.pytest_plugin"]

#: Every daemon label, in the order the tests run them.
ALL_DAEMONS = ["%s-%s" % (kind, release) for release in XEN_RELEASES
               for kind in release_kinds(release)] + ["embedded"]


def split_label(label: str) -> Tuple[str, Optional[str]]:
    """``"xenstored-4.20"`` -> ``("xenstored", "4.20")``;
    ``"embedded"`` -> ``("embedded", None)``."""
    kind, _, release = label.partition("-")
    return kind, release or None


def sandbox_args(label: str) -> List[str]:
    """The ``pyxs sandbox`` options that start the daemon ``label``."""
    kind, release = split_label(label)
    return ["--daemon", kind] + (["--xen", release] if release else [])


def selected_daemons(config: Any = None) -> List[str]:
    text = os.environ.get("PYXS_TEST_DAEMONS", "")
    names = [n.strip() for n in text.split(",") if n.strip()] or ALL_DAEMONS
    chosen = []
    for name in names:
        matches = [label for label in ALL_DAEMONS
                   if name in (label, split_label(label)[0],
                               split_label(label)[1])]
        if not matches:
            raise pytest.UsageError(
                "unknown daemon %r in PYXS_TEST_DAEMONS; choose among %s, "
                "a kind or a release" % (name, ", ".join(ALL_DAEMONS)))
        chosen += [label for label in matches if label not in chosen]
    release = (config.getoption("--xen") if config is not None else None) \
        or os.environ.get("PYXS_TEST_XEN")
    if release:
        chosen = [label for label in chosen
                  if split_label(label)[1] in (None, release)]
    return [label for label in ALL_DAEMONS if label in chosen]


def pytest_generate_tests(metafunc: Any) -> None:
    if "daemon_kind" in metafunc.fixturenames:
        metafunc.parametrize("daemon_kind", selected_daemons(metafunc.config))
    if "xen_label" in metafunc.fixturenames:
        xen = [label for label in selected_daemons(metafunc.config)
               if label != "embedded"]
        if xen:  # none: deselected below (an empty parametrize skips)
            metafunc.parametrize("xen_label", xen)


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    # A test of Xen's daemons (``xen_label``, one of them) when none is
    # selected (PYXS_TEST_DAEMONS=embedded) has no run: deselected.
    unselected = [item for item in items
                  if "xen_label" in getattr(item, "fixturenames", ()) and
                  "xen_label" not in getattr(
                      getattr(item, "callspec", None), "params", {})]
    if unselected:
        config.hook.pytest_deselected(items=unselected)
        items[:] = [item for item in items if item not in unselected]


@pytest.fixture
def daemon(daemon_kind: str, request: Any) -> Iterator[XenStoreDaemon]:
    """A fresh daemon of each selected kind, in its own directory."""
    kind, release = split_label(daemon_kind)
    try:
        running = XenStoreDaemon(kind, xen=release).start()
    except ProvisionError as exc:
        request.node.user_properties.append(
            ("unprovisioned", "%s: %s" % (daemon_kind, exc)))
        raise
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(daemon: XenStoreDaemon) -> Iterator[Client]:
    """A connected client on a fresh daemon."""
    with daemon.client(timeout=30) as connected:
        yield connected


def expect(kind: Union[str, XenStoreDaemon], table: Dict[str, Any],
           default: Any = None) -> Any:
    """The value a daemon is known to give, where daemons differ.

    ``kind`` is a daemon, its label (``xenstored-4.22``) or its kind
    (``xenstored``). Each entry of ``table`` besides "default" is a
    documented difference (docs/testing.rst), keyed by a label (one
    release) or a kind (every release); a label's entry wins.
    """
    label = kind.label if isinstance(kind, XenStoreDaemon) else kind
    for key in (label, split_label(label)[0], "default"):
        if key in table:
            return table[key]
    return default


_RESULTS: Dict[str, "collections.Counter[str]"] = collections.defaultdict(
    collections.Counter)
_UNPROVISIONED: Dict[str, str] = {}
_LABEL = re.compile(r"(?:\[|-)(%s)(?:\]|-)" % "|".join(
    re.escape(label) for label in sorted(ALL_DAEMONS, key=len, reverse=True)))


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
    found = _LABEL.search(report.nodeid.partition("[")[1] +
                          report.nodeid.partition("[")[2])
    kind = found.group(1) if found else "(no daemon)"
    _RESULTS[kind][report.outcome] += 1
    for name, reason in getattr(report, "user_properties", ()):
        if name == "unprovisioned":
            label, _, why = reason.partition(": ")
            _UNPROVISIONED.setdefault(label, why.splitlines()[0][:300])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _NOTES:
        terminalreporter.section("notes")
        for line in _NOTES:
            terminalreporter.write_line(line)
    if not _RESULTS:
        return
    terminalreporter.section("tests per daemon")
    for kind in [k for k in ALL_DAEMONS if k in _RESULTS] + sorted(
            k for k in _RESULTS if k not in ALL_DAEMONS):
        counts = _RESULTS[kind]
        terminalreporter.write_line("%-16s %s" % (kind, ", ".join(
            "%d %s" % (n, outcome) for outcome, n in sorted(counts.items()))))
    for label, why in sorted(_UNPROVISIONED.items()):
        terminalreporter.write_line(
            "%-16s NOT PROVISIONED or not started (its tests failed): %s"
            % (label, why),
            red=True)
