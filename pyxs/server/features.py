"""Xen 4.21/4.22 requests of the embedded daemon: features, quotas, CONTROL.

GET_FEATURE, SET_FEATURE, GET_QUOTA and SET_QUOTA (ops 23-26) follow
``docs/misc/xenstore.txt`` and answer as Xen 4.22's C xenstored does over a
socket; CONTROL answers in that daemon's formats. :class:`Domains` holds
the per-domain state these need. Invariants: a domain's quota values are
copied from the global ones when its state is first needed and then only
change by SET_QUOTA; a stored quota value 0 means "no limit" and is never
handed to the checks as 0 (:meth:`Domains.quotas_for`); features of an
introduced domain never change. With ``xen="4.17"`` or ``"4.20"`` the
daemon has no ops 23-26 (ENOSYS) and answers CONTROL as that release did.
"""

import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from .errors import XenStoreError
from .quotas import Quotas

if TYPE_CHECKING:  # pragma: no cover
    from .core import Core
    from .session import Session

__all__ = ["RELEASES", "FEATURES", "WATCHDEPTH", "DOMID_ANY", "Domains",
           "HANDLERS", "control"]

log = logging.getLogger("pyxs.server")

#: The releases the daemon can behave as: the newest protocol first; 4.20
#: speaks 4.17's protocol with 4.22's CONTROL formats.
RELEASES = ("4.22", "4.20", "4.17")
ERROR, WATCHDEPTH, DOMID_ANY_BIT = 2, 4, 8
#: What Xen 4.22's C xenstored offers (no RECONNECTION over a socket).
FEATURES = ERROR | WATCHDEPTH | DOMID_ANY_BIT
#: The domid of a permission entry that names every domain.
DOMID_ANY = 0x7FF5
_FIRST_RESERVED = 0x7FF0  # domids from here on never exist
_UINT_MAX = 0xFFFFFFFF  # C's "not set" marker, refused as a value
_NO_LIMIT = sys.maxsize

# (wire name, Quotas field or None, description) in C xenstored's order.
_QUOTAS: Tuple[Tuple[str, Optional[str], str], ...] = (
    ("nodes", "nodes", "Nodes per domain"),
    ("watches", "watches", "Watches per domain"),
    ("outstanding", "outstanding", "Outstanding requests per domain"),
    ("memory", None, "Total Xenstore memory per domain"),
    ("transactions", "transactions", "Active transactions per domain"),
    ("transaction-nodes", "transaction_nodes",
     "Max. number of accessed nodes per transaction"),
    ("node-permissions", "perms", "Max. number of permissions per node"),
    ("path-max", "path_max", "Max. length of a node path"),
    ("node-size", "node_size", "Max. size of a node"),
)
# CONTROL quota of Xen 4.17: (its name, the name above, description).
_QUOTAS_417 = (
    ("nodes", "nodes", "Nodes per domain"),
    ("watches", "watches", "Watches per domain"),
    ("transactions", "transactions", "Transactions per domain"),
    ("outstanding", "outstanding", "Outstanding requests per domain"),
    ("transaction-nodes", "transaction-nodes",
     "Max. number of accessed nodes per transaction"),
    ("memory", "memory", "Total Xenstore memory per domain (error level)"),
    ("node-size", "node-size", "Max. size of a node"),
    ("path-max", "path-max", "Max. length of a node path"),
    ("permissions", "node-permissions",
     "Max. number of permissions per node"),
)
_MEMORY = 2 * 1024 * 1024 + 512 * 1024
_SOFT_MEMORY = 2 * 1024 * 1024
#: Every name GET_QUOTA lists, in its order.
QUOTA_NAMES = ("nodes", "watches", "outstanding", "memory", "soft-memory",
               "transactions", "transaction-nodes", "node-permissions",
               "path-max", "node-size")
_ATOI = re.compile(rb"\s*([+-]?\d+)")
_LOG_SWITCHES = ("obj", "io", "wrl", "acc", "tdb")


def _strings(payload: bytes) -> List[bytes]:
    return payload.split(b"\x00")[:-1]


def _atoi(text: bytes) -> int:
    """C's ``atoi`` read as unsigned: leading digits, else 0."""
    match = _ATOI.match(text)
    return int(match.group(1)) & 0xFFFFFFFF if match else 0


def _domid(text: bytes) -> int:
    """C xenstored's ``parse_domid``: all of ``text`` decimal, <= 65535
    (EINVAL otherwise; an empty string is domain 0)."""
    match = re.fullmatch(rb"\s*([+-]?)(\d*)", text)
    if match is None or (text.strip() and not match.group(2)):
        raise XenStoreError("EINVAL")
    value = int(match.group(2) or b"0")
    if match.group(1) == b"-" and value:
        raise XenStoreError("EINVAL")  # strtoul wraps: far above 65535
    if value > 65535:
        raise XenStoreError("EINVAL")
    return value


class Domains:
    """Features and quota values per domain, plus the global defaults."""

    def __init__(self, quotas: Quotas) -> None:
        self.defaults: Dict[str, int] = dict(_values_of(quotas))
        self.quotas: Dict[int, Dict[str, int]] = {}
        self.features: Dict[int, int] = {}
        self._effective: Dict[int, Quotas] = {}
        self.global_quotas = quotas

    def known(self, domid: int) -> None:
        """Creates a domain's state (as C does when it first sees it)."""
        if domid >= _FIRST_RESERVED:
            raise XenStoreError("ENOENT")
        if domid not in self.quotas:
            self.quotas[domid] = dict(self.defaults)
            self.features[domid] = FEATURES

    def forget(self, domid: int) -> None:
        """Drops a released domain's state."""
        self.quotas.pop(domid, None)
        self.features.pop(domid, None)
        self._effective.pop(domid, None)

    def set_quota(self, domid: Optional[int], name: str, value: int) -> None:
        """Stores one value, for a domain or (None) the defaults."""
        if domid is None:
            self.defaults[name] = value
            self.global_quotas = _quotas_of(self.defaults)
        else:
            self.quotas[domid][name] = value
            self._effective.pop(domid, None)

    def quotas_for(self, domid: int) -> Quotas:
        """The limits to check for ``domid``: 0 becomes "no limit"."""
        quotas = self._effective.get(domid)
        if quotas is None:
            values = self.quotas.get(domid, self.defaults)
            quotas = self._effective[domid] = _quotas_of(values)
        return quotas


def _values_of(quotas: Quotas) -> List[Tuple[str, int]]:
    values = [(name, getattr(quotas, field) if field else _MEMORY)
              for name, field, _ in _QUOTAS]
    return values + [("soft-memory", _SOFT_MEMORY)]


def _quotas_of(values: Dict[str, int]) -> Quotas:
    fields = {field: values[name] or _NO_LIMIT
              for name, field, _ in _QUOTAS if field}
    return Quotas(**fields)


def _quota_name(name: bytes) -> str:
    text = name.decode("ascii", "replace")
    if text not in QUOTA_NAMES:
        raise XenStoreError("EINVAL")
    return text


def _privileged(session: "Session") -> None:
    if not session.who.privileged:
        raise XenStoreError("EACCES")


# -- ops 23-26 -------------------------------------------------------------

def _get_feature(core: "Core", session: "Session", tx: object,
                 payload: bytes) -> bytes:
    fields = _strings(payload)
    if not fields:
        value = FEATURES if session.who.privileged else \
            core.domains_state.features.get(session.domid, FEATURES)
        return b"%d\x00" % value
    _privileged(session)
    if len(fields) > 1:
        raise XenStoreError("EINVAL")
    domid = _domid(fields[0])
    core.domains_state.known(domid)
    return b"%d\x00" % core.domains_state.features[domid]


def _set_feature(core: "Core", session: "Session", tx: object,
                 payload: bytes) -> bytes:
    _privileged(session)
    fields = _strings(payload)
    if len(fields) != 2:
        raise XenStoreError("EINVAL")
    domid = _domid(fields[0])
    features = _atoi(fields[1])
    core.domains_state.known(domid)
    if domid in core.domains:
        raise XenStoreError("EBUSY")
    if features & ~FEATURES:
        raise XenStoreError("EINVAL")
    core.domains_state.features[domid] = features
    return b"OK\x00"


def _get_quota(core: "Core", session: "Session", tx: object,
               payload: bytes) -> bytes:
    _privileged(session)
    fields = _strings(payload)
    state = core.domains_state
    if not fields:
        return " ".join(QUOTA_NAMES).encode("ascii") + b"\x00"
    if len(fields) > 2:
        raise XenStoreError("EINVAL")
    values = state.defaults
    if len(fields) == 2:
        domid = _domid(fields[0])
        state.known(domid)
        values = state.quotas[domid]
    return b"%d\x00" % values[_quota_name(fields[-1])]


def _set_quota(core: "Core", session: "Session", tx: object,
               payload: bytes) -> bytes:
    _privileged(session)
    fields = _strings(payload)
    if len(fields) not in (2, 3):
        raise XenStoreError("EINVAL")
    domid = None
    if len(fields) == 3:
        domid = _domid(fields[0])
        core.domains_state.known(domid)
    name = _quota_name(fields[-2])
    value = _atoi(fields[-1])
    if value == _UINT_MAX:
        raise XenStoreError("EINVAL")
    core.domains_state.set_quota(domid, name, value)
    if domid is None:
        core.quotas = core.domains_state.global_quotas
    return b"OK\x00"


Handler = Callable[["Core", "Session", object, bytes], bytes]

#: The Xen 4.21 operations by number (4.17 mode leaves them out: ENOSYS).
HANDLERS: Dict[int, Handler] = {23: _get_feature, 24: _set_feature,
                                25: _get_quota, 26: _set_quota}


# -- CONTROL ---------------------------------------------------------------

class ControlState:
    """What CONTROL's log commands change."""

    def __init__(self) -> None:
        self.switches = {"obj", "io"}
        self.logfile: Optional[str] = None
        self.logging = True

    def write(self, text: str) -> None:
        """Appends a line to the log file (or the Python log)."""
        if self.logfile is None:
            log.info("%s", text)
            return
        if self.logging:
            with open(self.logfile, "a") as handle:
                handle.write(text + "\n")


_HELP_422 = (("check", ""), ("log", "[on|off|+<switch>|-<switch>]"),
             ("logfile", "<file>"), ("memreport", "[<file>]"),
             ("print", "<string>"),
             ("quota", "[set <name> <val>|<domid>|max [-r]]"),
             ("quota-soft", "[set <name> <val>]"), ("help", ""))
_HELP_417 = (("check", ""), ("log", "on|off"), ("logfile", "<file>"),
             ("memreport", "[<file>]"), ("print", "<string>"),
             ("quota", "[set <name> <val>|<domid>]"),
             ("quota-soft", "[set <name> <val>]"), ("help", ""))


def _text(text: str) -> bytes:
    return text.encode("ascii", "replace") + b"\x00"


def _accounting(core: "Core", domid: int) -> Dict[str, int]:
    sessions = [s for s in core.sessions if s.domid == domid]
    return {"nodes": core.store.owned.get(domid, 0),
            "watches": sum(len(s.watches) for s in sessions),
            "transactions": sum(len(s.transactions) for s in sessions)}


def _quota_control(core: "Core", args: List[bytes], soft: bool) -> bytes:
    state = core.domains_state
    old = core.xen == "4.17"
    if not args:
        levels = core.xen != "4.22"  # "(error level)" before 4.21
        rows = [("memory", state.defaults["soft-memory"], "Total Xenstore "
                 "memory per domain" + (" (warning level)" if levels
                                        else ""))] if soft \
            else [(shown, state.defaults[name], descr)
                  for shown, name, descr in _QUOTAS_417] if old \
            else [(name, state.defaults[name], descr + (
                " (error level)" if levels and name == "memory" else ""))
                  for name, _, descr in _QUOTAS]
        return _text("Quota settings:\n" + "".join(
            "%-17s: %8d %s\n" % row for row in rows))
    if args[0] == b"set":
        if len(args) != 3 or _atoi(args[2]) < 1 or \
                _atoi(args[2]) >= 2 ** 31:
            raise XenStoreError("EINVAL")
        name = args[1].decode("ascii", "replace")
        if old:
            name = {row[0]: row[1] for row in _QUOTAS_417}.get(name, "?")
        if soft:
            name = "soft-" + name
        if name not in QUOTA_NAMES or (soft and name != "soft-memory"):
            raise XenStoreError("EINVAL")
        state.set_quota(None, name, _atoi(args[2]))
        core.quotas = state.global_quotas
        return b"OK\x00"
    if soft:
        raise XenStoreError("EINVAL")
    if args[0] == b"max" and not old:
        if len(args) > 1 and args[1:] != [b"-r"]:
            raise XenStoreError("EINVAL")
        peak: Dict[str, int] = {}
        for domid in state.quotas:
            if domid:
                for name, value in _accounting(core, domid).items():
                    peak[name] = max(peak.get(name, 0), value)
        return _text("Max. seen accounting values:\n" + "".join(
            "%-17s: %8d\n" % (name, peak.get(name, 0))
            for name, _, _ in _QUOTAS))
    if len(args) != 1:
        raise XenStoreError("EINVAL")
    domid = _atoi(args[0])
    if domid not in core.domains:
        raise XenStoreError("ENOENT")
    used = _accounting(core, domid)
    if old:
        return _text("Domain %d:\n" % domid + "".join(
            "%-16s: %8d\n" % (name, used.get(name, 0)) for name in
            ("nodes", "watches", "transactions", "outstanding", "memory")))
    return _text("Domain %d:\n" % domid + "".join(
        "%-17s: %8d (max %8d)\n" % (name, used.get(name, 0),
                                    used.get(name, 0))
        for name, _, _ in _QUOTAS))


def _log_control(core: "Core", args: List[bytes]) -> bytes:
    state = core.control_state
    if not args and core.xen != "4.17":
        return _text("Log switch settings:\n" + "".join(
            "%-8s: %s\n" % (name, "on" if name in state.switches else "off")
            for name in _LOG_SWITCHES))
    if len(args) != 1:
        raise XenStoreError("EINVAL")
    arg = args[0].decode("ascii", "replace")
    if arg in ("on", "off"):
        state.logging = arg == "on"
    elif arg[:1] in ("+", "-") and arg[1:] in _LOG_SWITCHES and \
            core.xen != "4.17":
        (state.switches.add if arg[0] == "+" else
         state.switches.discard)(arg[1:])
    else:
        raise XenStoreError("EINVAL")
    return b"OK\x00"


def _memreport(core: "Core", args: List[bytes]) -> bytes:
    if len(args) > 1:
        raise XenStoreError("EINVAL")
    target = os.fsdecode(args[0]) if args else core.control_state.logfile
    if target is None:
        raise XenStoreError("EBADF")
    store = core.store
    sizes = sum(len(path) + node.data_size()
                for path, node in store.nodes.items())
    report = ("pyxs embedded xenstored memory report\n"
              "nodes: %d (%d bytes of paths and records)\n"
              "connections: %d\nwatches: %d\ntransactions: %d\n" % (
                  len(store.nodes), sizes, len(core.sessions),
                  sum(len(s.watches) for s in core.sessions),
                  sum(len(s.transactions) for s in core.sessions)))
    try:
        with open(os.path.abspath(target), "a") as handle:
            handle.write(report)
    except OSError:
        raise XenStoreError("EBADF") from None
    return b"OK\x00"


def control(core: "Core", session: "Session", tx: object,
            payload: bytes) -> bytes:
    """CONTROL: ``help``, ``check``, ``print``, ``log``, ``logfile``,
    ``memreport``, ``quota`` and ``quota-soft``."""
    _privileged(session)
    fields = _strings(payload)
    if not fields:
        raise XenStoreError("EINVAL")
    command, args = fields[0], fields[1:]
    if command == b"help":
        if args:
            raise XenStoreError("EINVAL")
        if core.xen == "4.17":
            return _text("".join("%s\t%s\n" % row for row in _HELP_417))
        return _text("".join("%-15s %s\n" % row for row in _HELP_422))
    if command == b"check":
        return b"OK\x00"
    if command == b"print":
        if len(args) != 1:
            raise XenStoreError("EINVAL")
        core.control_state.write("control: %s" % args[0].decode(
            "utf-8", "replace"))
        return b"OK\x00"
    if command in (b"quota", b"quota-soft"):
        return _quota_control(core, args, command == b"quota-soft")
    if command == b"log":
        return _log_control(core, args)
    if command == b"logfile":
        if len(args) != 1:
            raise XenStoreError("EINVAL")
        core.control_state.logfile = os.path.abspath(os.fsdecode(args[0]))
        return b"OK\x00"
    if command == b"memreport":
        return _memreport(core, args)
    raise XenStoreError("EINVAL")
