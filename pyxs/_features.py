"""Xen 4.21/4.22 protocol additions, the pure part: feature bits, argument
checks and strict parsing of GET_FEATURE / GET_QUOTA replies.

No I/O here: :class:`~pyxs.Client` builds requests with these helpers and
runs every reply through them, so a broken peer gives
:class:`~pyxs.exceptions.UnexpectedPacket`, never a ``ValueError``.
Invariants: every value sent or accepted is a decimal ``unsigned int``;
``2**32 - 1`` is never sent as a quota (C xenstored reserves it to mean
"not set" and refuses it).
"""

import enum
import errno
import os
import re
import weakref
from typing import Any, List, MutableMapping, Optional

from .exceptions import (
    InvalidPayload,
    UnexpectedPacket,
    UnsupportedOperation,
)

__all__ = ["Feature", "DOMID_ANY", "known_features", "remember_features",
           "feature_payload", "quota_payload", "lacks_watchdepth",
           "check_features",
           "check_quota_name", "check_quota_value", "parse_decimal",
           "parse_names"]

#: The domid a permission entry names to mean "every domain" (Xen 4.22,
#: needs :attr:`Feature.DOMID_ANY`).
DOMID_ANY = 0x7FF5


class Feature(enum.IntFlag):
    """XenStore server feature bits (``GET_FEATURE``, the ring's
    ``server_features``); unknown bits may appear and are kept."""

    #: The ring can be reconnected (not over sockets).
    RECONNECTION = 1
    #: Errors on the ring are reported (ring ``error`` field).
    ERROR = 2
    #: ``WATCH`` takes a depth, and ``@releaseDomain/<domid>`` works.
    WATCHDEPTH = 4
    #: Permission entries may name :data:`DOMID_ANY`.
    DOMID_ANY = 8


_DECIMAL = re.compile(rb"(0|[1-9][0-9]{0,9})\x00?\Z")
_NAME = re.compile(rb"[!-~]+\Z")  # printable ASCII, no blank
_UINT_MAX = 2 ** 32 - 1
_DOMID_LIMIT = 0x10000  # C xenstored refuses larger domids (EINVAL)

#: Features of each connection, asked once per router (routers never
#: reconnect): a Monitor deciding how to set a depth watch looks here.
_features_of: "MutableMapping[Any, int]" = weakref.WeakKeyDictionary()


def known_features(router: Any) -> Optional[int]:
    """The features learnt for ``router``'s connection, if any."""
    try:
        return _features_of.get(router)
    except TypeError:  # a router double without weak references
        return None


def remember_features(router: Any, features: int) -> None:
    """Records the features of ``router``'s connection."""
    try:
        _features_of[router] = features
    except TypeError:
        pass


def _check_uint(value: Any, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s"
                        % (what, type(value).__name__))
    if not 0 <= value < limit:
        raise ValueError("%s %d is out of range (0 to %d)"
                         % (what, value, limit - 1))
    return int(value)


def check_features(features: Any) -> int:
    """A feature mask to send: an int (or :class:`Feature`) in 32 bits."""
    return _check_uint(features, "features", 2 ** 32)


def check_quota_value(value: Any) -> int:
    """A quota value to send; 0 disables the check."""
    return _check_uint(value, "quota value", _UINT_MAX)


def check_quota_name(name: Any, op: str) -> bytes:
    """A quota name as bytes: printable ASCII without blanks."""
    if isinstance(name, str):
        data = name.encode("utf-8")
    elif isinstance(name, bytes):
        data = name
    else:
        raise TypeError("quota name must be str or bytes, not %s"
                        % type(name).__name__)
    if not _NAME.match(data):
        raise InvalidPayload(name, "a quota name is printable ASCII "
                             "without blanks, e.g. 'nodes'", op=op)
    return data


def _domid_field(domid: Any) -> bytes:
    return b"%d\x00" % _check_uint(domid, "domid", _DOMID_LIMIT)


def feature_payload(domid: Any, features: Any = None) -> bytes:
    """The payload of GET_FEATURE for a domain, or of SET_FEATURE."""
    return _domid_field(domid) + (b"" if features is None else
                                  b"%d\x00" % check_features(features))


def quota_payload(op: str, name: Any, domid: Any = None,
                  value: Any = None) -> bytes:
    """The payload of GET_QUOTA (``value`` None) or SET_QUOTA; without
    ``domid``, for the global values."""
    head = b"" if domid is None else _domid_field(domid)
    tail = b"" if value is None else b"%d\x00" % check_quota_value(value)
    return head + check_quota_name(name, op) + b"\x00" + tail


def lacks_watchdepth(wpath: bytes, depth: Any) -> UnsupportedOperation:
    """The refusal of a special watch that needs WATCHDEPTH."""
    refusal = UnsupportedOperation(
        errno.ENOSYS, os.strerror(errno.ENOSYS),
        reason="watching %s%s needs the daemon's WATCHDEPTH feature "
        "(Xen 4.22), which it lacks" % (
            wpath.decode("ascii"), "" if depth is None else " with a depth"))
    refusal.with_context("WATCH", wpath)
    return refusal


def parse_decimal(reply: bytes, op: str) -> int:
    """The unsigned decimal of a GET_FEATURE / GET_QUOTA reply."""
    match = _DECIMAL.match(reply)
    if match is None or int(match.group(1)) > _UINT_MAX:
        raise UnexpectedPacket("%s reply %r is not a decimal number"
                               % (op, reply[:40]))
    return int(match.group(1))


def parse_names(reply: bytes) -> List[str]:
    """The blank-separated quota names of a bare GET_QUOTA reply."""
    text = reply[:-1] if reply.endswith(b"\x00") else reply
    names = text.split(b" ") if text else []
    if any(not _NAME.match(name) for name in names):
        raise UnexpectedPacket("GET_QUOTA reply %r is not a list of quota "
                               "names" % reply[:40])
    return [name.decode("ascii") for name in names]
