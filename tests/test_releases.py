"""pyxs.testing's Xen releases: choosing, provisioning, reporting failures.

The behavioural suites run against every release through the ``daemon``
fixture; this file checks the release machinery itself: names, what each
release offers, parallel instances, and that a release which cannot be
provisioned fails with the reason (and is named in the summary).
"""

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import ALL_DAEMONS, selected_daemons, split_label

from pyxs.cli import EXIT_USAGE, main
from pyxs.testing import (
    DEFAULT_RELEASE,
    XEN_RELEASES,
    ProvisionError,
    XenStoreDaemon,
    find_xen,
    release_kinds,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_releases_and_their_daemons():
    assert XEN_RELEASES == ("4.17", "4.20", "4.22")
    assert DEFAULT_RELEASE == "4.17"
    assert release_kinds("4.20") == ("xenstored", "oxenstored")
    assert release_kinds("4.22") == ("xenstored",)
    assert ALL_DAEMONS == [
        "xenstored-4.17", "oxenstored-4.17", "xenstored-4.20",
        "oxenstored-4.20", "xenstored-4.22", "embedded"]


def test_bad_choices_are_refused_before_starting():
    with pytest.raises(ValueError, match="unknown Xen release '4.18'"):
        XenStoreDaemon("xenstored", xen="4.18")
    with pytest.raises(ValueError, match="4.22 has no oxenstored"):
        XenStoreDaemon("oxenstored", xen="4.22")
    assert XenStoreDaemon("xenstored").label == "xenstored-4.17"
    assert XenStoreDaemon("oxenstored", xen="4.20").label == \
        "oxenstored-4.20"
    assert XenStoreDaemon("embedded").label == "embedded"


def test_daemon_selection(monkeypatch):
    monkeypatch.setenv("PYXS_TEST_DAEMONS", "oxenstored, 4.22,embedded")
    assert selected_daemons() == ["oxenstored-4.17", "oxenstored-4.20",
                                  "xenstored-4.22", "embedded"]
    monkeypatch.setenv("PYXS_TEST_DAEMONS", "xenstored-4.20")
    assert selected_daemons() == ["xenstored-4.20"]
    monkeypatch.setenv("PYXS_TEST_DAEMONS", "")
    monkeypatch.setenv("PYXS_TEST_XEN", "4.20")
    assert selected_daemons() == ["xenstored-4.20", "oxenstored-4.20",
                                  "embedded"]
    monkeypatch.setenv("PYXS_TEST_DAEMONS", "xenstored-4.21")
    with pytest.raises(pytest.UsageError, match="xenstored-4.21"):
        selected_daemons()


def test_each_release_is_its_own_install(xen_label):
    kind, release = split_label(xen_label)
    xen = find_xen(release=release)
    assert xen.release == release
    assert xen.daemon(kind) is not None
    assert xen.tool("test-xenstore") is not None
    # 4.22 is built from source and says from which version.
    assert (xen.source is not None) == (release == "4.22")


def test_two_instances_side_by_side(daemon_kind):
    """Two daemons of one kind and release (oxenstored with its fixed
    socket path, 4.20's in their own mount namespaces) each keep their
    own store."""
    kind, release = split_label(daemon_kind)
    with XenStoreDaemon(kind, xen=release) as one, \
            XenStoreDaemon(kind, xen=release) as two, \
            one.client(timeout=30) as a, two.client(timeout=30) as b:
        assert one.socket_path != two.socket_path
        a.write(b"/side", b"one")
        b.write(b"/side", b"two")
        assert (a.read(b"/side"), b.read(b"/side")) == (b"one", b"two")
        done = two.run_tool("xenstore-read", "/side")
        assert (done.returncode, done.stdout) == (0, b"two\n")


def test_missing_source_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PYXS_XEN_SOURCE", str(tmp_path / "no-such-xen"))
    with pytest.raises(ProvisionError, match="PYXS_XEN_SOURCE names .*"
                       "no-such-xen, which does not exist"):
        XenStoreDaemon("xenstored", xen="4.22").start()


def test_broken_source_fails_with_its_reason(monkeypatch, tmp_path):
    tree = tmp_path / "tree"
    (tree / "tools").mkdir(parents=True)
    configure = tree / "configure"
    configure.write_text("#!/bin/sh\necho 'no compiler today' >&2\nexit 1\n")
    configure.chmod(0o755)
    monkeypatch.setenv("PYXS_XEN_SOURCE", str(tree))
    monkeypatch.setenv("PYXS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ProvisionError) as info:
        find_xen(release="4.22")
    message = str(info.value)
    assert "failed at configure (status 1" in message
    assert "no compiler today" in message and str(tree) in message
    # Nothing half-built is left to be taken for a build next time.
    assert [name for name in os.listdir(tmp_path / "cache")
            if name.startswith("xen-source-") and not name.endswith(
                (".lock", ".log"))] == []


def run_pytest(tmp_path, test, *args, **env):
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["pyxs.testing.pytest_plugin"]\n')
    (tmp_path / "test_it.py").write_text(textwrap.dedent(test))
    environ = dict(os.environ, PYTHONPATH=REPO, **env)
    for name in ("PYXS_TEST_DAEMON", "PYXS_TEST_XEN"):
        environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "-p", "no:xdist", str(tmp_path)] + list(args), env=environ,
        capture_output=True, text=True, timeout=300)


def test_plugin_takes_the_release(tmp_path):
    done = run_pytest(tmp_path, """
        def test_label(xenstore_daemon, xenstore_client):
            xenstore_client.write(b"/k", b"v")
            assert xenstore_daemon.label == "oxenstored-4.20"
        """, "--xenstore-daemon", "oxenstored", "--xen", "4.20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_summary_names_what_cannot_be_provisioned(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(os.path.join(REPO, "tests", "conftest.py"), str(suite))
    (suite / "test_one.py").write_text(
        "def test_write(client):\n    client.write(b'/k', b'v')\n")
    environ = dict(os.environ, PYTHONPATH=REPO,
                   PYXS_TEST_DAEMONS="xenstored-4.22,embedded",
                   PYXS_XEN_SOURCE=str(tmp_path / "gone"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "-p", "no:xdist", str(suite)], env=environ, capture_output=True,
        text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 passed, 1 error" in out
    assert "xenstored-4.22   1 failed" in out, out
    assert "xenstored-4.22   NOT PROVISIONED or not started (its tests " \
        "failed): " \
        "PYXS_XEN_SOURCE names %s" % (tmp_path / "gone") in out, out


FEATURES_PROGRAM = r"""
import pyxs
from pyxs._internal import Op
with pyxs.Client() as c:
    try:
        print(c.execute_command(Op.GET_FEATURE, b"").rstrip(b"\x00").decode())
    except pyxs.PyXSError as exc:
        print(exc.args[0])
"""


@pytest.mark.parametrize("release, answer", [
    ("4.17", "%d" % errno.ENOSYS), ("4.22", "14")])
def test_sandbox_starts_the_release(capfd, monkeypatch, release, answer):
    """GET_FEATURE tells the releases apart: 4.22's daemon answers it."""
    monkeypatch.setenv("PYTHONPATH", REPO)
    status = main(["sandbox", "--daemon", "xenstored", "--xen", release,
                   "--", sys.executable, "-c", FEATURES_PROGRAM])
    out, err = capfd.readouterr()
    assert (status, out, err) == (0, answer + "\n", "")


def test_sandbox_refuses_an_unknown_release(capfd):
    assert main(["sandbox", "--xen", "4.21", "--", "true"]) == EXIT_USAGE
    assert "unknown Xen release '4.21'" in capfd.readouterr().err
