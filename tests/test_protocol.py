"""The Xen 4.21/4.22 protocol through the client: features, quotas, watch
depth, special per-domain watches and CONTROL replies.

Every test runs against daemons that speak the new protocol (Xen 4.22's C
xenstored, the embedded daemon) and against those that do not (C xenstored
and oxenstored of Xen 4.17 and 4.20, the embedded daemon as 4.17: every
daemon of the suite, plus that one), where
the calls must fail with :class:`~pyxs.UnsupportedOperation` and watch
depth must still mean the same thing, filtered by the monitor.
"""

import asyncio
import errno
from typing import Any, Dict, Iterator, List

import pytest
from aiosync import SyncAio
from conftest import selected_daemons, split_label
from xsassert import events_before_marker

import pyxs.aio
from pyxs import Client, Feature, PyXSError, UnsupportedOperation
from pyxs.exceptions import InvalidPath, InvalidPayload
from pyxs.testing import XenStoreDaemon

#: What Xen 4.22's C xenstored offers over a socket (no RECONNECTION).
OFFERED = Feature.ERROR | Feature.WATCHDEPTH | Feature.DOMID_ANY
#: C xenstored 4.22's quotas and their defaults, in its order.
QUOTAS = [("nodes", 1000), ("watches", 128), ("outstanding", 20),
          ("memory", 2621440), ("soft-memory", 2097152),
          ("transactions", 10), ("transaction-nodes", 1024),
          ("node-permissions", 5), ("path-max", 2048), ("node-size", 2048)]


def _targets() -> List[str]:
    """The suite's daemon labels, plus the embedded daemon as 4.17."""
    labels = selected_daemons()
    return labels + (["embedded-4.17"] if "embedded" in labels else [])


@pytest.fixture(params=_targets())
def target(request) -> Iterator[XenStoreDaemon]:
    kind, release = split_label(request.param)
    with XenStoreDaemon(kind, xen=release) as running:
        yield running


@pytest.fixture
def xs(target) -> Iterator[Client]:
    with target.client(timeout=30) as connected:
        yield connected


@pytest.fixture(params=["threaded", "aio"])
def xs_any(request, target) -> Iterator[Any]:
    """pyxs.Client, then pyxs.aio.Client (driven synchronously): the new
    calls behave the same through both."""
    if request.param == "threaded":
        with target.client(timeout=30) as connected:
            yield connected
    else:
        with SyncAio(unix_socket_path=target.socket_path,
                     timeout=30) as connected:
            yield connected


def new_protocol(daemon: XenStoreDaemon) -> bool:
    """Whether ``daemon`` speaks the Xen 4.21/4.22 additions."""
    return daemon.release in (None, "4.22")


def errno_of(call, *args) -> int:
    with pytest.raises(PyXSError) as info:
        call(*args)
    return info.value.args[0]


def assert_lacks(call, *args, what: str) -> None:
    """The call fails as a daemon older than Xen 4.21 makes it fail."""
    with pytest.raises(UnsupportedOperation) as info:
        call(*args)
    assert info.value.args == (errno.ENOSYS, "Function not implemented")
    assert what in str(info.value) and "lacks" in str(info.value)


# -- features ---------------------------------------------------------------

def test_features(target, xs_any):
    if not new_protocol(target):
        assert_lacks(xs_any.get_features, what="GET_FEATURE")
        assert_lacks(xs_any.get_features, 5, what="GET_FEATURE")
        assert_lacks(xs_any.set_features, 5, Feature.ERROR, what="SET_FEATURE")
        assert xs_any.read(b"/nope", b"-") == b"-"  # still usable
        return
    features = xs_any.get_features()
    assert isinstance(features, Feature) and features == OFFERED
    assert xs_any.get_features(5) == OFFERED  # a domain not yet introduced
    xs_any.set_features(5, Feature.ERROR)
    assert xs_any.get_features(5) == Feature.ERROR
    xs_any.set_features(5, 0)
    assert xs_any.get_features(5) == 0
    assert errno_of(xs_any.set_features, 6,
                    Feature.RECONNECTION) == errno.EINVAL
    assert errno_of(xs_any.set_features, 6, 16) == errno.EINVAL
    assert xs_any.get_features(6) == OFFERED  # refused changes change nothing
    # dom0 is always introduced: its features are fixed.
    assert errno_of(xs_any.set_features, 0, OFFERED) == errno.EBUSY
    xs_any.introduce_domain(7, 1, 1)
    assert errno_of(xs_any.set_features, 7, Feature.ERROR) == errno.EBUSY
    assert errno_of(xs_any.get_features, 0x7FF0) == errno.ENOENT


def test_features_arguments_are_checked_before_sending(xs_any):
    with pytest.raises(ValueError):
        xs_any.get_features(70000)
    with pytest.raises(TypeError):
        xs_any.set_features(5, True)
    with pytest.raises(ValueError):
        xs_any.set_features(5, 2 ** 32)
    with pytest.raises(TypeError):
        xs_any.get_features("5")
    assert xs_any.read(b"/nope", b"-") == b"-"


# -- quotas -----------------------------------------------------------------

def test_quotas(target, xs_any):
    if not new_protocol(target):
        assert_lacks(xs_any.quota_names, what="GET_QUOTA")
        assert_lacks(xs_any.get_quota, "nodes", what="GET_QUOTA")
        assert_lacks(xs_any.get_quota, "nodes", 3, what="GET_QUOTA")
        assert_lacks(xs_any.set_quota, "nodes", 5, what="SET_QUOTA")
        assert xs_any.read(b"/nope", b"-") == b"-"
        return
    assert xs_any.quota_names() == [name for name, _ in QUOTAS]
    for name, default in QUOTAS:
        assert xs_any.get_quota(name) == default
        assert xs_any.get_quota(name.encode(), 0) == default
    xs_any.set_quota("nodes", 77, domid=6)
    assert xs_any.get_quota("nodes", 6) == 77
    assert xs_any.get_quota("nodes") == 1000
    xs_any.set_quota("nodes", 2000)
    assert xs_any.get_quota("nodes") == 2000
    assert xs_any.get_quota("nodes", 6) == 77  # set before: kept
    assert xs_any.get_quota("nodes", 9) == 2000  # a domain seen later
    xs_any.set_quota("watches", 0)  # 0 disables the check
    assert xs_any.get_quota("watches") == 0
    xs_any.set_quota("soft-memory", 9, domid=6)
    assert xs_any.get_quota("soft-memory", 6) == 9
    # The documented name "permissions" is node-permissions here.
    assert errno_of(xs_any.get_quota, "permissions") == errno.EINVAL
    assert errno_of(xs_any.get_quota, "soft-nodes") == errno.EINVAL
    assert errno_of(xs_any.get_quota, "nodes", 0x7FF0) == errno.ENOENT


def test_quota_arguments_are_checked_before_sending(xs_any):
    for value in (-1, 2 ** 32 - 1):
        with pytest.raises(ValueError):
            xs_any.set_quota("nodes", value)
    for name in ("", "no des", "a\x00b", "n\u00f6des"):
        with pytest.raises(InvalidPayload):
            xs_any.get_quota(name)
    with pytest.raises(TypeError):
        xs_any.set_quota("nodes", "5")
    with pytest.raises(ValueError):
        xs_any.get_quota("nodes", -1)
    assert xs_any.read(b"/nope", b"-") == b"-"


# -- watch depth --------------------------------------------------------------

def _events_by_token(monitor) -> Dict[bytes, List[bytes]]:
    seen: Dict[bytes, List[bytes]] = {}
    for path, token in events_before_marker(monitor):
        seen.setdefault(token, []).append(path)
    return seen


def test_watch_depth_means_the_same_everywhere(target, xs):
    xs.write(b"/wd/a/b", b"x")
    with xs.monitor() as m:
        m.watch(b"/wd", b"d0", depth=0)
        m.watch(b"/wd", b"d1", depth=1)
        m.watch("/wd", "d2", depth=2)
        m.watch(b"/wd", b"all")
        xs.write(b"/wd/x", b"1")
        xs.write(b"/wd/a/b", b"2")
        xs.write(b"/wd/c/d/e", b"3")
        xs.write(b"/wd", b"4")
        xs.delete(b"/wd/a")  # one event, /wd/a, for the removed subtree
        seen = _events_by_token(m)
    assert seen[b"d0"] == [b"/wd", b"/wd"]
    assert seen[b"d1"] == [b"/wd", b"/wd/x", b"/wd", b"/wd/a"]
    assert seen[b"d2"] == [b"/wd", b"/wd/x", b"/wd/a/b", b"/wd", b"/wd/a"]
    assert seen[b"all"] == [b"/wd", b"/wd/x", b"/wd/a/b", b"/wd/c/d/e",
                            b"/wd", b"/wd/a"]


def test_watch_depth_means_the_same_through_pyxs_aio(target):
    async def main() -> Dict[bytes, List[bytes]]:
        async with pyxs.aio.Client(unix_socket_path=target.socket_path,
                                   timeout=30) as c, c.monitor() as m:
            await c.write(b"/wd/a/b", b"x")
            await m.watch(b"/wd", b"d1", depth=1)
            await m.watch(b"/wd", b"all")
            await c.write(b"/wd/x", b"1")
            await c.write(b"/wd/a/b", b"2")
            await m.watch(b"/marker", b"marker")  # its event comes last
            seen: Dict[bytes, List[bytes]] = {}
            while True:
                path, token = await m.get(30)
                if token == b"marker":
                    return seen
                seen.setdefault(token, []).append(path)
    seen = asyncio.run(main())
    assert seen[b"d1"] == [b"/wd", b"/wd/x"]
    assert seen[b"all"] == [b"/wd", b"/wd/x", b"/wd/a/b"]


def test_watch_depth_on_the_root(xs):
    with xs.monitor() as m:
        m.watch(b"/", b"top", depth=1)
        xs.write(b"/r1", b"v")
        xs.write(b"/r2/x", b"v")
        xs.write(b"/r2", b"w")
        seen = _events_by_token(m)
    assert seen[b"top"] == [b"/", b"/r1", b"/r2"]


def test_watch_depth_is_checked_before_sending(xs):
    with xs.monitor() as m:
        for depth in (-1, 2 ** 31):
            with pytest.raises(ValueError):
                m.watch(b"/x", b"t", depth=depth)
        with pytest.raises(TypeError):
            m.watch(b"/x", b"t", depth="1")
        with pytest.raises(ValueError):  # special paths take depth 1 only
            m.watch(b"@releaseDomain", b"t", depth=2)
        with pytest.raises(ValueError):
            m.watch(b"@releaseDomain/5", b"t", depth=1)
        with pytest.raises(InvalidPath):
            m.watch(b"@releaseDomain/x", b"t")
        assert m.watched == set()
        m.watch(b"/x", b"t", depth=1)
        assert m.watched == {b"/x"}


def test_special_watches_per_domain(target, xs):
    with xs.monitor() as m:
        if not new_protocol(target):
            with pytest.raises(UnsupportedOperation) as info:
                m.watch(b"@releaseDomain", b"r1", depth=1)
            assert "WATCHDEPTH" in str(info.value)
            with pytest.raises(UnsupportedOperation):
                m.watch(b"@releaseDomain/5", b"r5")
            assert m.watched == set()
            m.watch(b"@releaseDomain", b"plain")  # still fine
            expected = [b"@releaseDomain"]
            if target.kind != "oxenstored":  # refuses INTRODUCE here
                xs.introduce_domain(5, 1, 1)
                xs.release_domain(5)
                expected.append(b"@releaseDomain")
            assert _events_by_token(m) == {b"plain": expected}
            return
        m.watch(b"@releaseDomain", b"r1", depth=1)
        m.watch(b"@releaseDomain/5", b"r5")
        m.watch(b"@releaseDomain/6", b"r6")
        m.watch(b"@releaseDomain", b"plain")
        m.watch(b"@introduceDomain", b"i1", depth=1)
        xs.introduce_domain(5, 1, 1)
        xs.release_domain(5)
        seen = _events_by_token(m)
    assert seen == {
        b"r1": [b"@releaseDomain", b"@releaseDomain/5"],
        b"r5": [b"@releaseDomain/5", b"@releaseDomain/5"],
        b"r6": [b"@releaseDomain/6"],
        b"plain": [b"@releaseDomain", b"@releaseDomain"],
        b"i1": [b"@introduceDomain", b"@introduceDomain/5"]}


def test_features_are_asked_once_per_connection(target, xs):
    count = [0]
    real = xs.router.submit_many

    def counting(requests):
        count[0] += sum(op == 23 for op, _, _ in requests)
        return real(requests)

    xs.router.submit_many = counting
    try:
        with xs.monitor() as m:
            for index in range(3):
                m.watch(b"/once", b"t%d" % index, depth=1)
        with xs.monitor() as m:
            m.watch(b"/once", b"again", depth=1)
    finally:
        del xs.router.submit_many
    assert count[0] == 1


# -- CONTROL ------------------------------------------------------------------

def test_control_replies_lose_their_trailing_nul(target, xs_any):
    reply = xs_any.control("print", "from pyxs")
    assert reply == b"OK"
    if target.kind == "oxenstored":
        return  # answers OK to every command
    help_text = xs_any.control("help").decode()
    assert not help_text.endswith("\x00")
    for command in ("check", "log", "logfile", "memreport", "print",
                    "quota", "quota-soft", "help"):
        assert any(line.split()[0] == command
                   for line in help_text.splitlines() if line.strip())
    settings = xs_any.control("quota").decode()
    assert settings.startswith("Quota settings:\n")
    assert "nodes" in settings and "1000" in settings
