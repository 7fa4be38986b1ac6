"""What a fresh Xen host's store holds before any guest starts.

On a real host, ``xen-init-dom0`` runs once after xenstored starts: it
records domain 0's id and name under ``/local/domain/0`` and lets every
domain read ``/local/domain``. A daemon started by :mod:`pyxs.testing` has
none of it; :func:`seed_dom0` writes the same keys, so code (and docs) that
reads ``/local/domain/0/name`` work as they would on a host.
"""

from typing import Any, Dict

#: The keys written by :func:`seed_dom0`, as ``xen-init-dom0`` writes them.
DOM0_KEYS: Dict[bytes, bytes] = {
    b"/local/domain/0/domid": b"0",
    b"/local/domain/0/name": b"Domain-0",
}


def seed_dom0(client: Any) -> None:
    """Writes domain 0's keys through ``client`` (a connected
    :class:`pyxs.Client`), and makes ``/local/domain`` readable by every
    domain (owner 0, others read: ``r0``). Running it twice changes
    nothing."""
    for path, value in DOM0_KEYS.items():
        client.write(path, value)
    client.set_perms(b"/local/domain", [b"r0"])
