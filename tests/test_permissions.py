"""Permissions for real: a domain's connection meets the daemon's checks.

Xen's daemons reach guests only through shared-memory rings, which a
machine without Xen cannot provide, so these tests use the embedded daemon,
whose permission rules were checked against C xenstored (see
tests/test_differential.py and pyxs/server).
"""

import errno

import pytest

from pyxs.exceptions import PyXSError
from pyxs.testing import XenStoreDaemon

GUEST, OTHER = 5, 6


@pytest.fixture(params=["embedded"])  # named in each test's id
def daemon(request):
    with XenStoreDaemon(request.param, domains=[GUEST, OTHER]) as running:
        yield running


@pytest.fixture
def dom0(daemon):
    with daemon.client(timeout=30) as c:
        for domid in (GUEST, OTHER):
            home = b"/local/domain/%d" % domid
            c.mkdir(home)
            c.set_perms(home, [b"n%d" % domid])  # owned by the guest
        yield c


def refused(call, *args):
    with pytest.raises(PyXSError) as info:
        call(*args)
    return info.value.args[0]


def test_a_domain_owns_its_home_and_nothing_else(daemon, dom0):
    with daemon.client(GUEST, timeout=30) as guest, \
            daemon.client(OTHER, timeout=30) as other:
        guest.write(b"/local/domain/5/data", b"mine")
        assert guest.read(b"/local/domain/5/data") == b"mine"
        assert refused(other.read, b"/local/domain/5/data") == errno.EACCES
        assert refused(other.write, b"/local/domain/5/x", b"y") == \
            errno.EACCES
        assert refused(guest.write, b"/tool/evil", b"y") == errno.EACCES
        # dom0 sees everything, and the new node is owned by the guest.
        assert dom0.read(b"/local/domain/5/data") == b"mine"
        assert dom0.get_perms(b"/local/domain/5/data") == [b"n5"]


def test_relative_paths_resolve_under_the_domain_home(daemon, dom0):
    with daemon.client(GUEST, timeout=30) as guest:
        guest.write(b"device/vif/0/state", b"4")
        assert dom0.read(b"/local/domain/5/device/vif/0/state") == b"4"
        assert guest.list(b"device/vif") == [b"0"]
        assert guest.get_domain_path(GUEST) == b"/local/domain/5"


def test_set_perms_takes_effect(daemon, dom0):
    dom0.write(b"/vm/secret", b"s")
    dom0.set_perms(b"/vm/secret", [b"n0"])
    with daemon.client(GUEST, timeout=30) as guest:
        assert refused(guest.read, b"/vm/secret") == errno.EACCES
        dom0.set_perms(b"/vm/secret", [b"n0", b"r5"])
        assert guest.read(b"/vm/secret") == b"s"
        assert refused(guest.write, b"/vm/secret", b"t") == errno.EACCES
        dom0.set_perms(b"/vm/secret", [b"n0", b"b5"])
        guest.write(b"/vm/secret", b"t")
        assert dom0.read(b"/vm/secret") == b"t"
        # A guest may not hand out rights on a node it does not own.
        assert refused(guest.set_perms, b"/vm/secret", [b"b5"]) == \
            errno.EACCES


def test_privileged_operations_are_refused_by_the_daemon(daemon, dom0):
    with daemon.client(GUEST, timeout=30) as guest:
        assert refused(guest.introduce_domain, 9, 1, 1) == errno.EACCES
        assert refused(guest.release_domain, OTHER) == errno.EACCES
        assert refused(guest.set_target, GUEST, OTHER) == errno.EACCES


def test_watches_do_not_leak_unreadable_paths(daemon, dom0):
    dom0.write(b"/vm/secret", b"s")
    dom0.set_perms(b"/vm/secret", [b"n0"])
    with daemon.client(GUEST, timeout=30) as guest, \
            guest.monitor() as m:
        m.watch(b"/vm/secret", b"secret")
        m.watch(b"/local/domain/5", b"home")
        initial = {m.get(timeout=30), m.get(timeout=30)}
        assert initial == {(b"/vm/secret", b"secret"),
                           (b"/local/domain/5", b"home")}
        dom0.write(b"/vm/secret", b"changed")
        dom0.write(b"/vm/secret/child", b"x")
        # The marker: events reach one connection in order, so anything
        # about /vm/secret would arrive before this one.
        dom0.write(b"/local/domain/5/marker", b"m")
        assert m.get(timeout=30) == (b"/local/domain/5/marker", b"home")
        assert m.events.empty()
        # Once readable, the same change is reported. (The SET_PERMS itself
        # is judged by the old permissions, as C xenstored does.)
        dom0.set_perms(b"/vm/secret", [b"n0", b"r5"])
        dom0.write(b"/vm/secret", b"again")
        assert m.get(timeout=30) == (b"/vm/secret", b"secret")


def test_quota_errors_surface_clearly_and_leave_the_client_usable(daemon,
                                                                 dom0):
    with daemon.client(GUEST, timeout=30) as guest:
        # Node size (C's default quota: 2048 bytes a node).
        assert refused(guest.write, b"big", b"x" * 2048) == errno.ENOSPC
        guest.write(b"small", b"x")
        # Watches: C's default is 128 a domain (it allows one more).
        m = guest.monitor()
        error = None
        for count in range(200):
            try:
                m.watch(b"w%d" % count, b"t")
            except PyXSError as exc:
                error = exc
                break
        assert error is not None and error.args[0] == errno.E2BIG
        assert count == 129
        assert "WATCH" in str(error)
        # Transactions: 10 a domain (again one more is allowed).
        clients = [guest.__copy__() for _ in range(12)]
        opened = 0
        with pytest.raises(PyXSError) as info:
            for tx_client in clients:
                tx_client.connect()
                tx_client.transaction()
                opened += 1
        assert info.value.args[0] == errno.ENOSPC and opened == 11
        for tx_client in clients:
            if tx_client.tx_id:
                tx_client.rollback()
            tx_client.close()
        assert guest.read(b"small") == b"x"
