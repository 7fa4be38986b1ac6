"""What each XenStore call sends, and how its reply reads: no I/O.

Every builder validates its arguments (raising the same errors, with the
same messages, as :class:`pyxs.Client`) and returns a :class:`Request`:
the op, the payload, and the path that error messages name. The reply
helpers turn a reply payload into the call's value, and refuse a reply no
correct daemon sends with :class:`~pyxs.exceptions.UnexpectedPacket`, never
a raw ``ValueError``. :mod:`pyxs.aio` drives these; any client may.

Invariant: a builder either raises before anything could be sent, or
returns a request whose payload fits the protocol's limit.
"""

import errno
import re
from typing import Any, Iterable, List, NamedTuple, Optional, Union

from ._internal import NUL, PAYLOAD_MAX, split_names
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
           "directory_part", "get_perms", "set_perms", "get_domain_path",
           "is_domain_introduced", "introduce_domain", "release_domain",
           "resume_domain", "set_target", "transaction_start",
           "transaction_end", "control", "reset_watches", "watch",
           "unwatch", "raw", "failure", "expect_ok", "names", "tx_id_of",
           "flag", "parse_part", "PART_RETRIES"]

Path = Union[bytes, str]


READ, WRITE, MKDIR, RM = Op.READ, Op.WRITE, Op.MKDIR, Op.RM
DIRECTORY, DIRECTORY_PART = Op.DIRECTORY, Op.DIRECTORY_PART
GET_PERMS, SET_PERMS = Op.GET_PERMS, Op.SET_PERMS
WATCH, UNWATCH, ERROR = Op.WATCH, Op.UNWATCH, Op.ERROR
TRANSACTION_START, TRANSACTION_END = Op.TRANSACTION_START, \
    Op.TRANSACTION_END
CONTROL, RESET_WATCHES = Op.CONTROL, Op.RESET_WATCHES

#: Restarts of a DIRECTORY_PART listing that changed between parts.
PART_RETRIES = 16


class Request(NamedTuple):
    """One validated request."""

    op: int
    payload: bytes
    path: Optional[bytes] = None


_COMMAND_BYTES = re.compile(b"[\x00\x20-\x7f]*\\Z")  # as pyxs 0.4's


def _decimal(number: int) -> bytes:
    return b"%d\x00" % number


def _on_path(op: int, path: Path, call: str) -> Request:
    checked = validate_path(path, call)
    return Request(op, checked + NUL, checked)


# -- nodes -------------------------------------------------------------------

def read(path: Path) -> Request:
    return _on_path(READ, path, "read")


def write(path: Path, value: Union[bytes, str],
          limit: int = PAYLOAD_MAX) -> Request:
    checked = validate_path(path, "write")
    data = validate_value(value, "write")
    payload = checked + NUL + data
    if len(payload) > limit:
        raise InvalidPayload(data, "path and value exceed the %d-byte "
                             "payload limit" % limit, op="WRITE",
                             path=checked, call="write", what="value")
    return Request(WRITE, payload, checked)


def mkdir(path: Path) -> Request:
    return _on_path(MKDIR, path, "mkdir")


def delete(path: Path) -> Request:
    return _on_path(RM, path, "delete")


def directory(path: Path) -> Request:
    return _on_path(DIRECTORY, path, "list")


def directory_part(path: bytes, offset: int) -> Request:
    return Request(DIRECTORY_PART, path + NUL + _decimal(offset), path)


def get_perms(path: Path) -> Request:
    return _on_path(GET_PERMS, path, "get_perms")


def set_perms(path: Path, perms: Iterable[Path]) -> Request:
    checked = validate_path(path, "set_perms")
    payload = checked + NUL + b"".join(
        perm + NUL for perm in validate_perms(perms, "set_perms"))
    if len(payload) > PAYLOAD_MAX:
        raise InvalidPayload(payload, "too many permissions",
                             op="SET_PERMS", path=checked, call="set_perms")
    return Request(SET_PERMS, payload, checked)


# -- domains, transactions, control ------------------------------------------

def get_domain_path(domid: int) -> Request:
    return Request(Op.GET_DOMAIN_PATH, _decimal(validate_domid(
        domid, call="get_domain_path")))


def is_domain_introduced(domid: int) -> Request:
    return Request(Op.IS_DOMAIN_INTRODUCED, _decimal(validate_domid(
        domid, call="is_domain_introduced")))


def introduce_domain(domid: int, mfn: int, eventchn: int) -> Request:
    call = "introduce_domain"
    mfn = validate_domid(mfn, "mfn", limit=2 ** 64, call=call)
    return Request(Op.INTRODUCE, _decimal(validate_domid(domid, call=call)) +
                   _decimal(mfn) + _decimal(validate_domid(
                       eventchn, "eventchn", limit=2 ** 32, call=call)))


def release_domain(domid: int) -> Request:
    return Request(Op.RELEASE, _decimal(validate_domid(
        domid, call="release_domain")))


def resume_domain(domid: int) -> Request:
    return Request(Op.RESUME, _decimal(validate_domid(
        domid, call="resume_domain")))


def set_target(domid: int, target: int) -> Request:
    return Request(Op.SET_TARGET, _decimal(validate_domid(
        domid, call="set_target")) + _decimal(validate_domid(
            target, "target", call="set_target")))


def transaction_start() -> Request:
    return Request(TRANSACTION_START, NUL)


def transaction_end(commit: bool) -> Request:
    return Request(TRANSACTION_END, b"T\x00" if commit else b"F\x00")


def control(*args: Union[bytes, str]) -> Request:
    """CONTROL: each argument NUL-terminated."""
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
    return Request(CONTROL, payload)


def reset_watches() -> Request:
    return Request(RESET_WATCHES, NUL)


def watch(wpath: Path, token: Union[bytes, str]) -> Request:
    checked = validate_watch_path(wpath, "watch")
    return Request(WATCH, checked + NUL + validate_token(token, "watch") + NUL,
                   checked)


def unwatch(wpath: Path, token: Union[bytes, str]) -> Request:
    checked = validate_watch_path(wpath, "unwatch")
    return Request(UNWATCH,
                   checked + NUL + validate_token(token, "unwatch") + NUL,
                   checked)


def raw(op: int, *args: Union[bytes, str],
        nul_terminated: bool = False) -> Request:
    """``execute_command``: the ``args`` concatenated as they are, printable
    ASCII and NUL only (as pyxs 0.4), but a WRITE's value (after the path's
    NUL) may hold any bytes."""
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
    return Request(op, payload)


# -- replies -----------------------------------------------------------------

def failure(request: Request, reply_op: int,
            payload: bytes) -> Optional[PyXSError]:
    """The error an ERROR reply stands for, with the request's context;
    None for a reply of the request's own op. (The pending table has
    already refused replies of any other op.)"""
    if reply_op == ERROR:
        return error(payload.rstrip(NUL)).with_context(
            op_name(request.op), request.path)
    if reply_op != request.op:
        return UnexpectedPacket("%s request got a %s reply" % (
            op_name(request.op), op_name(reply_op))).with_context(
                None, request.path)
    return None


def expect_ok(request: Request, payload: bytes) -> None:
    """Refuses a reply other than ``OK``."""
    if payload.rstrip(NUL) != b"OK":
        raise UnexpectedPacket("%s reply is %r, not OK" % (
            op_name(request.op), payload[:40])).with_context(
                None, request.path)


def names(payload: bytes) -> List[bytes]:
    """A DIRECTORY or GET_PERMS reply as a list of names."""
    return split_names(payload)


def flag(payload: bytes) -> bool:
    """An IS_DOMAIN_INTRODUCED reply: ``T`` or ``F``."""
    return payload.rstrip(NUL) == b"T"


def tx_id_of(payload: bytes) -> int:
    """The transaction id a TRANSACTION_START reply carries."""
    text = payload.rstrip(NUL)
    if not text.isdigit() or not 0 < int(text) < 2 ** 32:
        raise UnexpectedPacket("TRANSACTION_START reply %r is not a "
                               "transaction id" % text[:40])
    return int(text)


def parse_part(payload: bytes) -> Any:
    """A DIRECTORY_PART reply: ``(generation, names, finished)``."""
    fields = payload.split(NUL)
    chunk = fields[1:]
    finished = len(chunk) >= 2 and chunk[-1] == b"" and chunk[-2] == b""
    return fields[0], [name for name in chunk if name], finished


def part_gone(exc: PyXSError) -> bool:
    """True when a DIRECTORY_PART error means the daemon has no parts."""
    return exc.args[0] in (errno.ENOSYS, errno.EINVAL)
