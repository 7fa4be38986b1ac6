"""What each XenStore call sends, and how its reply reads: no I/O.

Every builder validates its arguments (raising the errors, with the
messages, that :class:`pyxs.Client` documents) and returns a
:class:`Request`: the op, the payload, the path that error messages name,
and the parser (from :mod:`pyxs._replies` or :mod:`pyxs._features`) that
turns the reply's payload into the call's value or refuses it with
:class:`~pyxs.exceptions.UnexpectedPacket`. A call that needs more than
one round trip (a listing fetched in parts) is a generator of requests,
:func:`listing`. The threaded :class:`pyxs.Client`, its batches and
:mod:`pyxs.aio` all drive these, so the three cannot drift apart.

Invariants: a builder either raises before anything could be sent, or
returns a request whose payload fits the protocol's limit; every reply
payload a client returns has been through its request's parser; every
ERROR reply becomes an exception through :func:`failure`.
"""

import errno
import re
from typing import (
    Any,
    Callable,
    Generator,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from . import _replies as replies
from ._features import (
    feature_payload,
    parse_decimal,
    parse_names,
    quota_payload,
)
from ._internal import NUL, PAYLOAD_MAX
from ._ops import Op, op_name
from .exceptions import (
    InvalidOperation,
    InvalidPayload,
    PyXSError,
    UnexpectedPacket,
)
from .helpers import (
    error,
    force_bytes,
    validate_domid,
    validate_path,
    validate_perms,
    validate_token,
    validate_value,
    validate_watch_path,
)

__all__ = ["Request", "read", "write", "mkdir", "delete", "directory",
           "directory_part", "listing", "get_perms", "set_perms",
           "get_domain_path", "is_domain_introduced", "introduce_domain",
           "release_domain", "resume_domain", "set_target",
           "transaction_start", "transaction_end", "control",
           "reset_watches", "watch", "unwatch", "raw", "get_features",
           "set_features", "quota_names", "get_quota", "set_quota",
           "failure", "step", "unblocked", "PART_RETRIES"]

Path = Union[bytes, str]
Parser = Callable[[bytes, int, Any], Any]

READ, WRITE, MKDIR, RM = Op.READ, Op.WRITE, Op.MKDIR, Op.RM
DIRECTORY, DIRECTORY_PART = Op.DIRECTORY, Op.DIRECTORY_PART
GET_PERMS, SET_PERMS = Op.GET_PERMS, Op.SET_PERMS
WATCH, UNWATCH, ERROR = Op.WATCH, Op.UNWATCH, Op.ERROR
TRANSACTION_START, TRANSACTION_END = Op.TRANSACTION_START, \
    Op.TRANSACTION_END
CONTROL, RESET_WATCHES = Op.CONTROL, Op.RESET_WATCHES

#: Restarts of a DIRECTORY_PART listing that changed between parts.
PART_RETRIES = 16


def value(payload: bytes, op: int, path: Any = None) -> bytes:
    """The parser of a READ reply: any bytes are a value."""
    return payload


def stripped(payload: bytes, op: int, path: Any = None) -> bytes:
    """The parser of a raw request's reply: without its trailing NULs."""
    return payload.rstrip(NUL)


def _text(payload: bytes, op: int, path: Any = None) -> bytes:
    """The parser of a CONTROL reply: without its one trailing NUL."""
    return payload[:-1] if payload.endswith(NUL) else payload


def _decimal_reply(payload: bytes, op: int, path: Any = None) -> int:
    return parse_decimal(payload, op_name(op))


def _names_reply(payload: bytes, op: int, path: Any = None) -> List[str]:
    return parse_names(payload)


class Request(NamedTuple):
    """One validated request, and how its reply reads."""

    op: int
    payload: bytes
    #: The path error messages name (None for calls without one).
    path: Optional[bytes] = None
    #: ``parse(payload, op, path)``: the call's value, or UnexpectedPacket.
    parse: Parser = value
    #: True for a request with an empty payload, which oxenstored 4.17
    #: answers only once more bytes follow (see ``Client._bare``).
    bare: bool = False

    def result(self, payload: bytes) -> Any:
        """The call's value from its reply's payload."""
        return self.parse(payload, self.op, self.path)


_COMMAND_BYTES = re.compile(b"[\x00\x20-\x7f]*\\Z")  # as pyxs 0.4's


def _decimal(number: int) -> bytes:
    return b"%d\x00" % number


def _on_path(op: int, path: Path, call: Optional[str],
             parse: Parser = replies.ok) -> Request:
    checked = validate_path(path, call)
    return Request(op, checked + NUL, checked, parse)


# -- nodes -------------------------------------------------------------------

def read(path: Path, call: Optional[str] = "read") -> Request:
    """READ; ``call`` names the call in errors (None: a batch names it)."""
    return _on_path(READ, path, call, value)


def write(path: Path, data: Union[bytes, str], limit: int = PAYLOAD_MAX,
          call: Optional[str] = "write") -> Request:
    checked = validate_path(path, call)
    data = validate_value(data, call)
    payload = checked + NUL + data
    if len(payload) > limit:
        raise InvalidPayload(data, "path and value exceed the %d-byte "
                             "payload limit" % limit, op="WRITE",
                             path=checked, call=call, what="value")
    return Request(WRITE, payload, checked, replies.ok)


def mkdir(path: Path) -> Request:
    return _on_path(MKDIR, path, "mkdir")


def delete(path: Path) -> Request:
    return _on_path(RM, path, "delete")


def directory(path: Path, call: str = "list") -> Request:
    return _on_path(DIRECTORY, path, call, replies.listing)


def directory_part(path: bytes, offset: int) -> Request:
    return Request(DIRECTORY_PART, path + NUL + _decimal(offset), path,
                   replies.directory_part)


def listing(path: Path, call: str = "list"
            ) -> Generator[Request, bytes, List[bytes]]:
    """The names of ``path``'s children: a generator that yields requests
    and is sent each reply's payload (or thrown the error it ended with);
    it returns the names.

    One DIRECTORY first; a listing too long for one reply (E2BIG) is
    fetched in DIRECTORY_PART parts, all of one generation of the node:
    a change between parts starts over, at most :data:`PART_RETRIES`
    times. Bounded: at most ``LIST_PARTS_MAX`` parts per generation, each
    carrying a name (the parser refuses a part that makes no progress).
    """
    request = directory(path, call)
    try:
        names: List[bytes] = request.result((yield request))
        return names
    except PyXSError as exc:
        if exc.args[0] != errno.E2BIG:
            raise
        too_big = exc
    checked = request.path
    assert checked is not None
    for _ in range(PART_RETRIES):
        names = []
        generation = None
        offset = 0
        for _ in range(replies.LIST_PARTS_MAX):
            part = directory_part(checked, offset)
            try:
                reply = yield part
            except PyXSError as exc:
                if exc.args[0] in (errno.ENOSYS, errno.EINVAL) and \
                        generation is None:
                    raise too_big from exc  # the daemon has no parts
                raise
            number, chunk, last = part.result(reply)
            if generation is None:
                generation = number
            elif number != generation:
                break  # the node changed between parts: start over
            names.extend(chunk)
            if last:
                return names
            offset += sum(len(name) + 1 for name in chunk)
        else:
            raise UnexpectedPacket(
                "no end marker after %d DIRECTORY_PART replies (pyxs lists "
                "at most %d parts)" % (replies.LIST_PARTS_MAX,
                                       replies.LIST_PARTS_MAX)
            ).with_context("DIRECTORY_PART", checked)
    raise error(errno.EAGAIN).with_context("DIRECTORY_PART", checked)


def step(steps: Generator[Request, bytes, Any], reply: Any = None
         ) -> Tuple[bool, Any]:
    """Advances a call of several round trips (such as :func:`listing`):
    feeds it ``reply``, a reply's payload or the PyXSError the request
    ended with (None to start). Returns ``(False, next request)``, or
    ``(True, value)`` once the call is over; raises the call's error."""
    try:
        if reply is None:
            return False, next(steps)
        if isinstance(reply, PyXSError):
            return False, steps.throw(reply)
        return False, steps.send(reply)
    except StopIteration as stop:
        return True, stop.value


def get_perms(path: Path) -> Request:
    return _on_path(GET_PERMS, path, "get_perms", replies.permissions)


def set_perms(path: Path, perms: Iterable[Path]) -> Request:
    checked = validate_path(path, "set_perms")
    payload = checked + NUL + b"".join(
        perm + NUL for perm in validate_perms(perms, "set_perms"))
    if len(payload) > PAYLOAD_MAX:
        raise InvalidPayload(payload, "too many permissions",
                             op="SET_PERMS", path=checked, call="set_perms")
    return Request(SET_PERMS, payload, checked, replies.ok)


# -- domains, transactions, control ------------------------------------------

def _domid(domid: int, call: str, what: str = "domid") -> bytes:
    return _decimal(validate_domid(domid, what, call=call))


def get_domain_path(domid: int) -> Request:
    return Request(Op.GET_DOMAIN_PATH, _domid(domid, "get_domain_path"),
                   None, replies.domain_path)


def is_domain_introduced(domid: int) -> Request:
    return Request(Op.IS_DOMAIN_INTRODUCED,
                   _domid(domid, "is_domain_introduced"), None,
                   replies.boolean)


def introduce_domain(domid: int, mfn: int, eventchn: int) -> Request:
    call = "introduce_domain"
    mfn = validate_domid(mfn, "mfn", limit=2 ** 64, call=call)
    return Request(Op.INTRODUCE, _domid(domid, call) + _decimal(mfn) +
                   _decimal(validate_domid(eventchn, "eventchn",
                                           limit=2 ** 32, call=call)),
                   None, replies.ok)


def release_domain(domid: int) -> Request:
    return Request(Op.RELEASE, _domid(domid, "release_domain"), None,
                   replies.ok)


def resume_domain(domid: int) -> Request:
    return Request(Op.RESUME, _domid(domid, "resume_domain"), None,
                   replies.ok)


def set_target(domid: int, target: int) -> Request:
    return Request(Op.SET_TARGET, _domid(domid, "set_target") +
                   _domid(target, "set_target", "target"), None, replies.ok)


def transaction_start() -> Request:
    return Request(TRANSACTION_START, NUL, None, replies.transaction_id)


def transaction_end(commit: bool) -> Request:
    return Request(TRANSACTION_END, b"T\x00" if commit else b"F\x00", None,
                   replies.ok)


def control(*args: Union[bytes, str]) -> Request:
    """CONTROL: each argument NUL-terminated; the reply is text."""
    if not args:
        raise TypeError("control: a command is needed")
    fields = [force_bytes(arg, "argument", call="control") for arg in args]
    for field in fields:
        if NUL in field:
            raise InvalidPayload(field, "must not contain NUL",
                                 call="control", what="argument")
    payload = b"".join(f + NUL for f in fields)
    if len(payload) > PAYLOAD_MAX:
        raise InvalidPayload(payload, call="control")
    return Request(CONTROL, payload, None, _text)


def reset_watches() -> Request:
    return Request(RESET_WATCHES, NUL, None, replies.ok)


def watch(wpath: Path, token: Union[bytes, str],
          depth: Optional[int] = None) -> Request:
    """WATCH; with ``depth`` (already checked), Xen 4.22's third field."""
    checked = validate_watch_path(wpath, "watch")
    payload = checked + NUL + validate_token(token, "watch") + NUL
    if depth is not None:
        payload += _decimal(depth)
    return Request(WATCH, payload, checked, replies.ok)


def unwatch(wpath: Path, token: Union[bytes, str]) -> Request:
    checked = validate_watch_path(wpath, "unwatch")
    return Request(UNWATCH,
                   checked + NUL + validate_token(token, "unwatch") + NUL,
                   checked, replies.ok)


def raw(op: int, *args: Union[bytes, str],
        nul_terminated: bool = False) -> Request:
    """``execute_command``: the ``args`` concatenated as they are, printable
    ASCII and NUL only (as pyxs 0.4), but a WRITE's value (after the path's
    NUL) may hold any bytes. The reply comes back without trailing NULs."""
    call = "execute_command"
    if op not in Op:
        raise InvalidOperation(op, call=call)
    payload = b"".join(force_bytes(arg, "argument", call=call)
                       for arg in args)
    if nul_terminated and not payload.endswith(NUL):
        payload += NUL
    checked = payload.partition(NUL)[0] if op == Op.WRITE else payload
    if not _COMMAND_BYTES.match(checked):
        raise InvalidPayload(payload, "arguments may hold only printable "
                             "ASCII and NUL", op=op, call=call)
    if len(payload) > PAYLOAD_MAX:
        raise InvalidPayload(payload, op=op, call=call)
    return Request(op, payload, None, stripped)


# -- features and quotas (Xen 4.21 and later) --------------------------------

def get_features(domid: Optional[int] = None) -> Request:
    if domid is None:  # this connection's: an empty payload, as libxenstore
        return Request(Op.GET_FEATURE, b"", None, _decimal_reply, True)
    return Request(Op.GET_FEATURE, feature_payload(domid), None,
                   _decimal_reply)


def unblocked(op: int, tx_id: int) -> List[Tuple[int, int, bytes]]:
    """The ``(op, tx_id, payload)`` requests that send a bare request (its
    empty payload, as libxenstore sends it: C xenstored reads one empty
    field as domid 0) so that every daemon answers it: oxenstored 4.17
    answers an empty payload only once more bytes follow, so a
    GET_DOMAIN_PATH of domain 0 goes in the same write. Only the first
    reply is wanted; the second request is to be abandoned."""
    return [(op, tx_id, b""),
            (Op.GET_DOMAIN_PATH, tx_id, b"0\x00")]


def set_features(domid: int, features: int) -> Request:
    return Request(Op.SET_FEATURE, feature_payload(domid, features), None,
                   replies.ok)


def quota_names() -> Request:
    return Request(Op.GET_QUOTA, b"", None, _names_reply, True)


def get_quota(name: Union[bytes, str],
              domid: Optional[int] = None) -> Request:
    return Request(Op.GET_QUOTA, quota_payload("GET_QUOTA", name, domid),
                   None, _decimal_reply)


def set_quota(name: Union[bytes, str], number: int,
              domid: Optional[int] = None) -> Request:
    return Request(Op.SET_QUOTA, quota_payload("SET_QUOTA", name, domid,
                                               number), None, replies.ok)


# -- replies -----------------------------------------------------------------

def failure(request: Request, reply_op: int,
            payload: bytes) -> PyXSError:
    """The error a reply of another op than the request's stands for: the
    daemon's error for an ERROR reply (see :func:`pyxs._replies.error_reply`),
    else UnexpectedPacket. (The pending table has already refused replies
    of any other op; test doubles of the router may not.)"""
    if reply_op == ERROR:
        return replies.error_reply(payload, request.op, request.path)
    return UnexpectedPacket("%s request got a %s reply" % (
        op_name(request.op), op_name(reply_op))).with_context(
            None, request.path)
