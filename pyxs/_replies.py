"""Reply parsers: one per reply shape of the XenStore protocol, and
:func:`check_reply`: whether a reply can answer its request at all.

A daemon is a peer, not an oracle: a broken or hostile one may send any
bytes in a correctly framed reply. Every reply payload the client turns
into a Python value goes through one of these functions, which either
return the value or raise :class:`~pyxs.exceptions.UnexpectedPacket`
naming the operation (and the path, when there is one). Nothing else
escapes: no ``ValueError`` from ``int()``, no ``struct.error`` later when
a value is reused.

The shapes (PROTOCOL.md; all three daemons pyxs is tested against send
exactly these):

* a string reply ends with exactly one NUL: ``OK\\0``, ``T\\0``/``F\\0``,
  a transaction id, a domain path;
* a transaction id is decimal, in ``1 .. 2**32 - 1`` (0 means "no
  transaction", and the id goes back into a 32-bit header field);
* a domain path is a valid absolute path;
* a listing (DIRECTORY) is zero or more valid child names, each ending
  with NUL; permissions (GET_PERMS) one or more ``<r|w|b|n><domid>``;
* a DIRECTORY_PART reply is a decimal generation count (at most 20
  digits, a uint64), then child names, then an empty name (one more NUL)
  on the last part only; a part that is not the last must carry at least
  one name, so every request makes progress;
* an ERROR reply is ``E<NAME>\\0`` (the NUL may be missing): a name this
  system knows gives ``args == (errno, strerror)``, another one is kept as
  the name (``args[0] == "EQUOTA"``); messages quote at most 60
  characters of what the daemon sent, so none exceeds about 200.

Messages show the offending payload through
:func:`pyxs.exceptions.shorten` (cut to 60 characters). Pure functions,
no I/O, no state.
"""

from ._internal import NUL, Op, Packet, op_name
from ._startup import LazyPattern
from .exceptions import (
    PyXSError,
    UnexpectedPacket,
    error_for,
    lacking,
    shorten,
)
from .helpers import path_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

__all__ = ["TX_ID_MAX", "LIST_PARTS_MAX", "transaction_id", "boolean",
           "ok", "domain_path", "listing", "permissions", "directory_part",
           "error_reply", "check_reply"]

#: Largest transaction id: the id is a uint32 header field, 0 means none.
TX_ID_MAX = 2 ** 32 - 1

#: Most DIRECTORY_PART replies one version of a listing may take. A part
#: from C xenstored carries all the names that fit in 4096 bytes, so this
#: covers about 4 MiB of short names (a listing of 100,000 36-character
#: UUIDs); a daemon that never sends the end marker fails here instead of
#: making the client loop forever.
LIST_PARTS_MAX = 1024

_TX_ID = LazyPattern(rb"([0-9]{1,10})\x00\Z")
_NAMES = LazyPattern(rb"(?:[A-Za-z0-9_@-]+\x00)*\Z")
# A sign is possible: C xenstored stores what strtol() read, and Xen's own
# binding lets a negative domid through (``n-1`` comes back as written).
_PERMS = LazyPattern(rb"(?:[rwbn]-?[0-9]{1,10}\x00)+\Z")
_PART = LazyPattern(rb"([0-9]{1,20})\x00((?:[A-Za-z0-9_@-]+\x00)*)(\x00?)\Z")
_NEW_OPS = frozenset((Op.GET_FEATURE, Op.SET_FEATURE, Op.GET_QUOTA,
                      Op.SET_QUOTA))
_ERROR = int(Op.ERROR)
_TRANSACTION_START = int(Op.TRANSACTION_START)
_QUIRK_OPS = (int(Op.WATCH), int(Op.UNWATCH))
_ERROR_NAME = LazyPattern(rb"(E[A-Z0-9_]+)\x00?\Z")


def _bad(op: int, payload: bytes, expected: str,
         path: "Any" = None) -> "PyXSError":
    """The UnexpectedPacket for a reply of the wrong shape."""
    return UnexpectedPacket("reply %s is not %s" % (
        shorten(payload), expected)).with_context(op_name(op), path)


def transaction_id(payload: bytes, op: int, path: "Any" = None) -> int:
    """A TRANSACTION_START reply: the new transaction's id."""
    match = _TX_ID.match(payload)
    if match is not None:
        tx_id = int(match.group(1))
        if 1 <= tx_id <= TX_ID_MAX:
            return tx_id
    raise _bad(op, payload, "a transaction id (decimal 1..%d, then NUL)"
               % TX_ID_MAX)


def boolean(payload: bytes, op: int, path: "Any" = None) -> bool:
    """An IS_DOMAIN_INTRODUCED reply: ``T\\0`` or ``F\\0``."""
    if payload == b"T\x00":
        return True
    if payload == b"F\x00":
        return False
    raise _bad(op, payload, "T or F (then NUL)")


def ok(payload: bytes, op: int, path: "Any" = None) -> None:
    """A reply whose only correct payload is ``OK\\0``."""
    if payload != b"OK\x00":
        raise _bad(op, payload, "OK (then NUL)", path)


def domain_path(payload: bytes, op: int, path: "Any" = None) -> bytes:
    """A GET_DOMAIN_PATH reply: a valid absolute path, then NUL."""
    home = payload[:-1]
    if payload[-1:] == NUL and home[:1] == b"/" and \
            path_problem(home) is None:
        return home
    raise _bad(op, payload, "an absolute path (then NUL)")


def listing(payload: bytes, op: int, path: "Any" = None) -> "List[bytes]":
    """A DIRECTORY reply: child names, each followed by NUL."""
    if not payload:
        return []
    if _NAMES.match(payload) is None:
        raise _bad(op, payload, "a list of child names (each followed by "
                   "NUL)", path)
    return payload[:-1].split(NUL)


def permissions(payload: bytes, op: int, path: "Any" = None) -> "List[bytes]":
    """A GET_PERMS reply: one or more ``<r|w|b|n><domid>``, each + NUL."""
    if _PERMS.match(payload) is None:
        raise _bad(op, payload, "a list of permissions (each followed by "
                   "NUL)", path)
    return payload[:-1].split(NUL)


def directory_part(payload: bytes, op: int, path: "Any" = None
                   ) -> "Tuple[bytes, List[bytes], bool]":
    """A DIRECTORY_PART reply: ``(generation, names, last)``.

    ``last`` is True when the part ends with the empty name that closes
    the listing. A part that is neither the last nor carries a name would
    make the caller ask for the same offset again: refused.
    """
    match = _PART.match(payload)
    if match is None:
        raise _bad(op, payload, "a listing part (generation, NUL, child "
                   "names each followed by NUL, NUL on the last part)",
                   path)
    generation, names, end = match.groups()
    last = bool(end)
    if not names and not last:
        raise _bad(op, payload, "a listing part: it carries no name and no "
                   "end marker", path)
    return generation, names[:-1].split(NUL) if names else [], last


def error_reply(payload: bytes, op: int, path: "Any" = None) -> "PyXSError":
    """The exception for an ERROR reply to ``op`` (returned, not raised).

    A well-formed name gives the daemon's error: ``args == (errno,
    strerror)``, or the name itself as ``args[0]`` when this system has no
    such errno. Anything else is an :class:`UnexpectedPacket`. ENOSYS for
    an op of Xen 4.21 and later is an
    :class:`~pyxs.exceptions.UnsupportedOperation` saying the daemon lacks
    it.
    """
    match = _ERROR_NAME.match(payload)
    if match is None:
        return UnexpectedPacket("ERROR reply %s is not an error name "
                                "(E<NAME>, then NUL)" % shorten(payload)
                                ).with_context(op_name(op), path)
    failure = error_for(match.group(1).decode("ascii")).with_context(
        op_name(op), path)
    if op in _NEW_OPS:  # ENOSYS from a daemon older than Xen 4.21
        return lacking(failure, op_name(op))
    return failure


def check_reply(sent_op: int, sent_tx: int,
                reply: "Packet") -> "Optional[UnexpectedPacket]":
    """Why ``reply`` cannot answer a ``sent_op`` request made in
    transaction ``sent_tx``; None when it can.

    The reply's op must be the request's, or ERROR. Its transaction must be
    the request's, except for TRANSACTION_START (daemons differ in what
    they put there) and for the header-less WATCH/UNWATCH replies of old
    xenbus drivers (``req_id = 0``, see :class:`pyxs._pending.PendingTable`).
    """
    op = reply.op
    if op != sent_op and op != _ERROR:
        return UnexpectedPacket("%s request got a %s reply" % (
            op_name(sent_op), op_name(op)))
    if reply.tx_id != sent_tx and sent_op != _TRANSACTION_START and \
            not (reply.rq_id == 0 and sent_op in _QUIRK_OPS):
        return UnexpectedPacket(
            "%s reply carries transaction %d, the request was in %d" % (
                op_name(sent_op), reply.tx_id, sent_tx))
    return None
