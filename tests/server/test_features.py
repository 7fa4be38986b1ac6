"""The embedded daemon's Xen 4.21/4.22 requests where C xenstored cannot be
compared over a socket: unprivileged callers, per-domain limits, CONTROL's
files, and behaving as an older release."""

import pytest

from pyxs._internal import Op
from pyxs.server import XenStoreServer

from .rawclient import RawClient


def test_unprivileged_callers(connect, dom0) -> None:
    guest = connect(3)
    assert guest.call(Op.GET_FEATURE, b"") == b"14\x00"  # its own features
    for op, payload in ((Op.GET_FEATURE, b"3\x00"),
                        (Op.SET_FEATURE, b"9\x002\x00"),
                        (Op.GET_QUOTA, b""), (Op.GET_QUOTA, b"nodes\x00"),
                        (Op.SET_QUOTA, b"nodes\x005\x00"),
                        (Op.CONTROL, b"quota\x00")):
        assert guest.call(op, payload) == b"EACCES", (op, payload)
    # 4.22 lets every domain watch @releaseDomain, not @introduceDomain.
    assert dom0.call(Op.GET_PERMS, b"@releaseDomain\x00") == \
        b"n0\x00r32757\x00"
    assert guest.call(Op.WATCH, b"@releaseDomain\x00r\x001\x00") == b"OK\x00"
    assert guest.call(Op.WATCH, b"@introduceDomain\x00i\x00") == b"OK\x00"
    guest.take_events()
    assert dom0.call(Op.INTRODUCE, b"5\x001\x001\x00") == b"OK\x00"
    assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
    assert guest.take_events() == {(b"@releaseDomain/5", b"r")}


def test_features_set_before_a_domain_connects(server, dom0) -> None:
    assert dom0.call(Op.SET_FEATURE, b"9\x002\x00") == b"OK\x00"
    guest = RawClient(server.socketpair(9))
    assert guest.call(Op.GET_FEATURE, b"") == b"2\x00"
    # Without WATCHDEPTH a depth is refused, as by an older daemon.
    assert guest.call(Op.WATCH, b"a\x00t\x001\x00") == b"EINVAL"
    assert guest.call(Op.WATCH, b"a\x00t\x00") == b"OK\x00"
    assert dom0.call(Op.SET_FEATURE, b"9\x0014\x00") == b"EBUSY"
    guest.close()


def _home(dom0: RawClient, domid: int) -> None:
    home = b"/local/domain/%d" % domid
    assert dom0.call(Op.MKDIR, home + b"\x00") == b"OK\x00"
    assert dom0.call(Op.SET_PERMS, home + b"\x00n%d\x00" % domid) == \
        b"OK\x00"


def test_quotas_per_domain_are_enforced(connect, dom0) -> None:
    guest, other = connect(3), connect(4)
    _home(dom0, 3)
    assert dom0.call(Op.SET_QUOTA, b"3\x00watches\x001\x00") == b"OK\x00"
    for name in (b"a", b"b"):  # C allows one more than the quota
        assert guest.call(Op.WATCH, name + b"\x00t\x00") == b"OK\x00"
    assert guest.call(Op.WATCH, b"c\x00t\x00") == b"E2BIG"
    for name in (b"a", b"b", b"c"):  # domain 4 keeps the default
        assert other.call(Op.WATCH, name + b"\x00t\x00") == b"OK\x00"
    assert dom0.call(Op.SET_QUOTA, b"3\x00watches\x000\x00") == b"OK\x00"
    assert guest.call(Op.WATCH, b"c\x00t\x00") == b"OK\x00"  # 0: no limit
    assert dom0.call(Op.SET_QUOTA, b"3\x00path-max\x005\x00") == b"OK\x00"
    assert guest.call(Op.WRITE, b"abcdef\x00v") == b"EINVAL"
    assert guest.call(Op.WRITE, b"abcde\x00v") == b"OK\x00"


def test_released_domains_start_over(dom0) -> None:
    assert dom0.call(Op.SET_QUOTA, b"5\x00nodes\x007\x00") == b"OK\x00"
    assert dom0.call(Op.INTRODUCE, b"5\x001\x001\x00") == b"OK\x00"
    assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
    assert dom0.call(Op.GET_QUOTA, b"5\x00nodes\x00") == b"1000\x00"


def test_control_log_files(tmp_path, dom0) -> None:
    logfile, report = tmp_path / "xs.log", tmp_path / "report"
    assert dom0.call(Op.CONTROL, b"memreport\x00") == b"EBADF"
    assert dom0.call(Op.CONTROL, b"logfile\x00%s\x00" % bytes(logfile)) \
        == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"print\x00hello\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"memreport\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"log\x00off\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"print\x00unseen\x00") == b"OK\x00"
    text = logfile.read_text()
    assert "control: hello\n" in text and "nodes: " in text
    assert "unseen" not in text
    assert dom0.call(Op.CONTROL, b"memreport\x00%s\x00" % bytes(report)) \
        == b"OK\x00"
    assert "connections: 1" in report.read_text()
    assert dom0.call(Op.CONTROL, b"memreport\x00/nonexistent/dir/r\x00") \
        == b"EBADF"


def test_control_log_switches_and_quota_settings(connect, dom0) -> None:
    assert dom0.call(Op.CONTROL, b"log\x00+wrl\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"log\x00-obj\x00") == b"OK\x00"
    assert dom0.call(Op.CONTROL, b"log\x00+nope\x00") == b"EINVAL"
    assert dom0.call(Op.CONTROL, b"log\x00") == (
        b"Log switch settings:\nobj     : off\nio      : on\n"
        b"wrl     : on\nacc     : off\ntdb     : off\n\x00")
    assert dom0.call(Op.CONTROL, b"quota\x00set\x00nodes\x00500\x00") == \
        b"OK\x00"
    assert dom0.call(Op.CONTROL, b"quota\x00set\x00nodes\x000\x00") == \
        b"EINVAL"
    assert dom0.call(Op.GET_QUOTA, b"nodes\x00") == b"500\x00"
    assert dom0.call(Op.CONTROL, b"quota-soft\x00set\x00memory\x007\x00") \
        == b"OK\x00"
    assert dom0.call(Op.GET_QUOTA, b"soft-memory\x00") == b"7\x00"
    guest = connect(3)
    _home(dom0, 3)
    assert guest.call(Op.WRITE, b"a\x00v") == b"OK\x00"
    report = dom0.call(Op.CONTROL, b"quota\x003\x00")
    assert report.startswith(b"Domain 3:\nnodes            :        ")
    assert dom0.call(Op.CONTROL, b"quota\x0077\x00") == b"ENOENT"


@pytest.mark.parametrize("release", ["4.17", "4.20"])
def test_behaving_as_an_older_release(release) -> None:
    with XenStoreServer(xen=release) as server:
        dom0 = RawClient(server.socketpair())
        for op in (23, 24, 25, 26):
            assert dom0.call(op, b"\x00") == b"ENOSYS"
        assert dom0.call(Op.WATCH, b"/a\x00t\x001\x00") == b"EINVAL"
        assert dom0.call(Op.WATCH, b"@releaseDomain/5\x00r5\x00") == \
            b"OK\x00"
        assert dom0.call(Op.WATCH, b"@releaseDomain\x00r\x00") == b"OK\x00"
        dom0.take_events()
        assert dom0.call(Op.INTRODUCE, b"5\x001\x001\x00") == b"OK\x00"
        assert dom0.call(Op.RELEASE, b"5\x00") == b"OK\x00"
        assert dom0.take_events() == {(b"@releaseDomain", b"r")}
        dom0.close()


def test_unknown_release_is_refused() -> None:
    with pytest.raises(ValueError, match="4.22"):
        XenStoreServer(xen="4.99")
