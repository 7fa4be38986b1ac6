"""pyxs.testing.seed_dom0: a fresh daemon made to look like a Xen host."""

from pyxs.testing import DOM0_KEYS, XenStoreDaemon, seed_dom0


def test_seed_dom0_writes_what_xen_init_dom0_writes(
        daemon: XenStoreDaemon) -> None:
    with daemon.client() as c:
        assert not c.exists(b"/local/domain/0/name")
        seed_dom0(c)
        seed_dom0(c)  # twice changes nothing
        assert c.read(b"/local/domain/0/name") == b"Domain-0"
        assert c.read(b"/local/domain/0/domid") == b"0"
        assert {p: c.read(p) for p in DOM0_KEYS} == DOM0_KEYS
        assert c.get_perms(b"/local/domain") == [b"r0"]
