"""Per-domain limits, with C xenstored 4.17's defaults.

Only unprivileged domains are limited; dom0 never is. Every limit counts
per domain over all of its connections (nodes by owner; watches,
transactions and outstanding replies summed over the domain's sessions,
see :class:`~pyxs.server.session.DomainUsage`).
"""

from typing import NamedTuple

__all__ = ["Quotas", "DEFAULT_QUOTAS"]


class Quotas(NamedTuple):
    """Limits for unprivileged domains (C xenstored's ``-Q`` names)."""

    #: Largest node record (header, permissions, value, child names).
    node_size: int = 2048
    #: Nodes a domain may own.
    nodes: int = 1000
    #: Watches per domain (C allows one more than this).
    watches: int = 128
    #: Replies queued and not yet sent, over all of a domain's
    #: connections; at this many the domain is not read until it takes
    #: some (0: no limit).
    outstanding: int = 20
    #: Open transactions per domain (C allows one more than this).
    transactions: int = 10
    #: Nodes one transaction may touch.
    transaction_nodes: int = 1024
    #: Entries in one permission list.
    perms: int = 5
    #: Path length, not counting a leading ``/local/domain/<domid>/``.
    path_max: int = 2048


DEFAULT_QUOTAS = Quotas()
