"""Exceptions raised by pyxs.

Every error is a :class:`PyXSError`. As in pyxs 0.4, an error reported by the
daemon has ``args == (errno, strerror)``; pyxs also records the operation and
the path involved so that the message says what failed.
"""

import builtins
import errno as _errno
import os

from ._ops import op_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["PyXSError", "InvalidOperation", "InvalidPayload", "InvalidPath",
           "InvalidPermission", "InvalidToken", "InvalidDomid",
           "ConnectionError", "UnexpectedPacket", "TimeoutError",
           "UnsupportedOperation"]

_SHOWN = 60  # at most this many characters of user data in a message


def _as_text(data: "Any") -> "Any":
    """Printable ASCII bytes as str, so messages show /a/b, not b'/a/b'."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            return data
        if text.isprintable():
            return text
    return data


def shorten(data: "Any") -> str:
    """Renders user data for a message, cut to a readable length."""
    text = repr(_as_text(data))
    if len(text) > _SHOWN:
        return "%s... (%d bytes)" % (text[:_SHOWN], len(data)) \
            if isinstance(data, (bytes, str)) else text[:_SHOWN] + "..."
    return text


def _context(op: "Optional[str]", path: "Any") -> str:
    parts = [op] if op else []
    if path is not None:
        shown = _as_text(path)
        parts.append(shown if isinstance(shown, str) and
                     len(shown) <= _SHOWN else shorten(path))
    return " ".join(parts)


class PyXSError(Exception):
    """Base class for all pyxs exceptions.

    For daemon errors ``args`` is ``(errno, strerror)``; ``errno`` is the name
    string itself (``"EQUOTA"``) when the daemon sends a name this system does
    not know. ``op`` and ``path`` tell which request failed, when known.
    """

    op: "Optional[str]" = None
    path: "Any" = None

    @property
    def errno(self) -> "Any":
        """The error number (or unknown error name), if any."""
        return self.args[0] if len(self.args) == 2 else None

    @property
    def strerror(self) -> "Optional[str]":
        """The error text, if any."""
        return self.args[1] if len(self.args) == 2 else None

    def with_context(self, op: "Optional[str]",
                     path: "Any" = None) -> "PyXSError":
        """Records the failed operation and path; returns ``self``."""
        self.op, self.path = op, path
        return self

    def __str__(self) -> str:
        context = _context(self.op, self.path)
        if len(self.args) == 2 and isinstance(self.args[1], str):
            number, text = self.args
            head = "[Errno %s] %s" % (number, text) \
                if isinstance(number, int) else text
            return "%s: %s" % (head, context) if context else head
        base = super().__str__()
        return "%s (%s)" % (base, context) if context else base


class _InvalidValue(PyXSError, ValueError):
    """A value refused before anything is sent; ``args == (value,)``.

    Also a :class:`ValueError`, as refused arguments are in Python.
    ``call`` names the method refusing it (``read``, ``write``...) and
    ``what`` the argument (``path``, ``value``, ``token``...); the message
    starts with both: ``read: invalid path '/a//b': contains //``.
    """

    what = "value"
    call: "Optional[str]" = None

    def __init__(self, value: "Any", reason: str = "", op: "Any" = None,
                 path: "Any" = None, call: "Optional[str]" = None,
                 what: "Optional[str]" = None) -> None:
        super().__init__(value)
        self.reason = reason
        if op is not None:
            self.op = op if isinstance(op, str) else op_name(op)
        self.path = path
        if call is not None:
            self.call = call
        if what is not None:
            self.what = what

    def _prefix(self) -> str:
        return "%s: " % self.call if self.call else ""

    def __str__(self) -> str:
        text = "%sinvalid %s %s" % (self._prefix(), self.what,
                                    shorten(self.args[0]))
        if self.reason:
            text += ": " + self.reason
        if self.op and not self.call:
            text += " (%s)" % self.op
        return text


class InvalidOperation(_InvalidValue):
    """Raised when a packet is given an operation not listed in ``Op``."""

    what = "operation"


class InvalidPayload(_InvalidValue):
    """Raised for a payload over 4096 bytes, or a field holding a NUL."""

    what = "payload"

    def __str__(self) -> str:
        value = self.args[0]
        shown = "of %d bytes" % len(value) \
            if isinstance(value, (bytes, str)) and len(value) > _SHOWN \
            else shorten(value)
        text = "%sinvalid %s %s: %s" % (
            self._prefix(), self.what, shown,
            self.reason or "exceeds the 4096-byte limit")
        context = _context(None if self.call else self.op, self.path)
        return "%s (%s)" % (text, context) if context else text


class InvalidPath(_InvalidValue):
    """Raised for a path XenStore would refuse.

    A path is at most 3072 bytes (absolute) or 2048 (relative), consists of
    ASCII letters, digits and ``-/_@``, contains no ``//``, and has no
    trailing ``/`` except the root itself.
    """

    what = "path"


class InvalidPermission(_InvalidValue):
    """Raised for a permission not of the form ``<r|w|b|n><domid>``.

    ::

        w<domid>        write only
        r<domid>        read only
        b<domid>        both read and write
        n<domid>        no access
    """

    what = "permission"


class InvalidToken(InvalidPayload):
    """Raised for a watch token that is empty or holds a NUL byte."""

    what = "token"

    def __str__(self) -> str:
        return _InvalidValue.__str__(self)


class InvalidDomid(_InvalidValue):
    """Raised for a domain id outside ``0 .. 65535`` (Xen's ``domid_t`` is
    16 bits), or an event channel or MFN out of its range."""

    what = "domid"


class ConnectionError(PyXSError):
    """Raised when the connection cannot be opened, or dies."""


class UnexpectedPacket(ConnectionError):
    """Raised when the daemon sends something the protocol does not allow.

    A :class:`ConnectionError`, as in pyxs 0.4: the peer cannot be trusted.
    """


class UnsupportedOperation(PyXSError):
    """Raised when the daemon lacks an operation or a feature a call needs.

    ``args == (errno.ENOSYS, strerror)`` as for the daemon's own ENOSYS
    reply; the message says what is missing (e.g. ``GET_QUOTA`` on a
    daemon older than Xen 4.21, or ``WATCHDEPTH``).
    """

    def __init__(self, *args: "Any", reason: str = "") -> None:
        super().__init__(*args)
        self.reason = reason

    def __str__(self) -> str:
        text = super().__str__()
        return "%s: %s" % (text, self.reason) if self.reason else text


# PyXSError's read-only errno/strerror (from args, as in pyxs 0.4) shadow
# OSError's writable attributes on purpose.
class TimeoutError(PyXSError, builtins.TimeoutError):  # type: ignore[override]
    """Raised when a reply does not arrive within the client's timeout."""

    def __init__(self, *args: "Any") -> None:
        PyXSError.__init__(self, *args)


def error_for(name_or_number: "Any") -> "PyXSError":
    """Builds the :class:`PyXSError` for an errno or a XenStore error name."""
    if isinstance(name_or_number, bytes):
        name_or_number = name_or_number.decode("ascii", "replace")
    if isinstance(name_or_number, str):
        number = getattr(_errno, name_or_number, None)
        if not isinstance(number, int):  # kept, but never a 4 KB message
            return PyXSError(name_or_number, "XenStore error %s" % (
                name_or_number if len(name_or_number) <= _SHOWN
                else shorten(name_or_number)))
        name_or_number = number
    return PyXSError(name_or_number, os.strerror(name_or_number))


def copy_error(error: "PyXSError") -> "PyXSError":
    """A fresh exception like ``error`` (args, op, path), one per waiter
    it is raised in, so tracebacks do not pile up on one object."""
    copy = type(error)(*error.args)
    copy.op, copy.path = error.op, error.path
    return copy


def lacking(exc: "PyXSError", op: str) -> "PyXSError":
    """Turns the ENOSYS of a daemon older than Xen 4.21 into an
    :class:`UnsupportedOperation` naming what is missing; other errors
    are returned as they are."""
    if exc.args[:1] != (_errno.ENOSYS,) or \
            isinstance(exc, UnsupportedOperation):
        return exc
    missing = UnsupportedOperation(*exc.args, reason=(
        "the daemon lacks %s (XenStore protocol of Xen 4.21 and later)"
        % op))
    missing.with_context(op, exc.path)
    return missing
