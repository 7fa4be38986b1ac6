"""Xen's own test program, ``test-xenstore``, against every daemon.

``test-xenstore`` (xen-utils, ``usr/lib/xen-<release>/bin``; built from
source for 4.22) exercises a daemon through libxenstore: reads and writes
of 1 and 2000 bytes, directories, removal, transactions with and without
conflicts. It is a conformance check written by Xen's developers, run here
test by test (so a failure names the test), then for a short random run.
Every Xen daemon meets its own release's program; the embedded daemon
meets every release's.
"""

import errno
import re
import subprocess
from typing import Dict, List

from conftest import split_label

from pyxs.exceptions import PyXSError
from pyxs.testing import XEN_RELEASES, find_xen

# Tests every release's program lists (4.17 to 4.22).
KNOWN_TESTS = {"read 1", "read 2000", "write 1", "write 2000", "dir",
               "rm node", "rm dir", "ta empty", "ta empty x", "ta rmw",
               "ta rmw x", "ta err"}

RANDOM_SECONDS = "2"


def tool_releases(label: str) -> List[str]:
    """The releases whose program meets daemon ``label``."""
    release = split_label(label)[1]
    return [release] if release else list(XEN_RELEASES)


def run(daemon, release: str,
        *args: str) -> "subprocess.CompletedProcess[bytes]":
    """Runs ``test-xenstore`` of ``release`` against ``daemon``."""
    xen = find_xen(release=release)
    env = daemon.tool_environ()
    env.update(xen.environ())
    return subprocess.run(xen.tool_command("test-xenstore") + list(args),
                          env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120)


def leftovers(client) -> List[bytes]:
    """What the runs left of their trees: each run works below
    xenstore-test/<pid> (relative to the connection's home, dom0's here)
    and removes it at the end, and xenstore-test too when that is empty
    (it may stay, empty, when another run's cleanup raced it)."""
    try:
        return client.list(b"/local/domain/0/xenstore-test")
    except PyXSError as exc:
        assert exc.args[0] == errno.ENOENT
        return []


def listed(daemon, release: str) -> Dict[str, str]:
    done = run(daemon, release, "-l")
    assert done.returncode == 0, done.stderr
    names = {}
    for line in done.stdout.decode().splitlines():
        name, _, description = line.partition(":")
        names[name.strip()] = description.strip()
    return names


def test_lists_its_tests(daemon, daemon_kind):
    for release in tool_releases(daemon_kind):
        names = listed(daemon, release)
        assert KNOWN_TESTS <= set(names), (release, names)
        assert all(names.values()), (release, names)


def test_every_test_passes(daemon, daemon_kind, client):
    failed = {}
    for release in tool_releases(daemon_kind):
        for name in sorted(listed(daemon, release)):
            done = run(daemon, release, "-t", name)
            out = done.stdout.decode(errors="replace")
            # A pass prints "<name>: <N> ns", a failure "<name>: failed
            # (ret = <errno>, stage <step>)" and exits 3.
            if done.returncode != 0 or not re.search(
                    r"(?m)^%s\s*: \d+ ns$" % re.escape(name), out):
                failed["%s %s" % (release, name)] = (
                    done.returncode, out.strip(),
                    done.stderr.decode(errors="replace").strip())
    assert failed == {}
    assert leftovers(client) == []


def test_random_run_passes(daemon, daemon_kind, client):
    for release in tool_releases(daemon_kind):
        done = run(daemon, release, "-r", RANDOM_SECONDS)
        assert (release, done.returncode, done.stdout, done.stderr) == (
            release, 0, b"", b"")
    assert leftovers(client) == []
