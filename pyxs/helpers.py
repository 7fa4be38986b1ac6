"""Validation and conversion helpers shared by the client and the daemon.

The rules are XenStore's own (see ``docs/misc/xenstore.txt``): checking them
here means a bad argument is refused before anything reaches the daemon.
Every validator takes ``call``, the name of the public method checking its
argument: the error then says which call refused what (``read: invalid path
'/a//b': contains //``). Refusals are :class:`ValueError` subclasses of
:class:`PyXSError` with ``args == (value,)`` (InvalidPath, InvalidPayload,
InvalidToken, InvalidPermission), or plain :class:`TypeError` /
:class:`ValueError` for wrong types, domain ids and timeouts; a ``str``
that cannot be encoded is refused like any other bad value of its argument.
No I/O here.
"""

from ._startup import LazyPattern
from .exceptions import (
    InvalidDomid,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    InvalidToken,
    PyXSError,
    _InvalidValue,
    error_for,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Type, Union

    Text = Union[bytes, str]

__all__ = ["error", "force_bytes", "validate_path", "validate_watch_path",
           "validate_perms", "validate_token", "validate_domid",
           "validate_timeout", "validate_value", "path_problem",
           "ABSOLUTE_PATH_MAX", "RELATIVE_PATH_MAX", "SPECIAL_WATCH_PATHS",
           "DOMID_LIMIT", "TIMEOUT_MAX"]

#: Longest absolute path XenStore accepts.
ABSOLUTE_PATH_MAX = 3072
#: Longest relative path XenStore accepts.
RELATIVE_PATH_MAX = 2048
#: The watch-only paths that fire on domain introduction and release.
SPECIAL_WATCH_PATHS = (b"@introduceDomain", b"@releaseDomain")
#: Domain ids are below this: Xen's ``domid_t`` is 16 bits.
DOMID_LIMIT = 2 ** 16
#: Longest finite timeout, in seconds: ``poll()`` takes a signed 32-bit
#: number of milliseconds (about 24.8 days).
TIMEOUT_MAX = (2 ** 31 - 1) // 1000

# The bytes a path may hold: deleting them leaves nothing of a valid one
# (cheaper than a regular expression, and ``re`` costs start-up time).
_PATH_CHARS = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               b"0123456789-/_@")
_PERM = LazyPattern(rb"[wrbn](\d+)\Z")
# One domain's special watch (Xen 4.22, needs WATCHDEPTH).
_SPECIAL_DOMAIN = LazyPattern(rb"@(introduceDomain|releaseDomain)/"
                              rb"(0|[1-9][0-9]{0,4})\Z")


def error(smth: "Any") -> "PyXSError":
    """Returns a :class:`PyXSError` for an errno value or an error name.

    >>> error("ENOENT").args[0] == 2
    True
    """
    return error_for(smth)


def _prefix(call: "Optional[str]") -> str:
    return "%s: " % call if call else ""


def _encode(value: "Any", what: str, call: "Optional[str]",
            refuse: "Type[_InvalidValue]", encoding: str = "utf-8") -> bytes:
    """``value`` as bytes; ``refuse`` (an _InvalidValue class) for a str
    that ``encoding`` cannot represent, TypeError for other types."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode(encoding)
        except UnicodeEncodeError as exc:
            raise refuse(value, "%r at index %d cannot be encoded as %s" % (
                exc.object[exc.start], exc.start, exc.encoding.upper()),
                call=call, what=what) from None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s%s must be bytes or str, not %s"
                    % (_prefix(call), what, type(value).__name__))


def force_bytes(value: "Any", what: str = "value", encoding: str = "utf-8",
                call: "Optional[str]" = None) -> bytes:
    """Converts ``str`` to bytes; refuses every other non-bytes type.

    A ``str`` that ``encoding`` cannot represent (a lone surrogate such as
    ``"\\udcff"``) raises :class:`InvalidPayload` naming ``what`` and
    ``call``; other types raise :class:`TypeError`.
    """
    return _encode(value, what, call, InvalidPayload, encoding)


def validate_value(value: "Any", call: "Optional[str]" = None) -> bytes:
    """Checks a node value (any bytes, or a UTF-8 encodable str)."""
    if type(value) is bytes:
        return value
    return _encode(value, "value", call, InvalidPayload)


def _path_bytes(path: "Any", call: "Optional[str]") -> bytes:
    if isinstance(path, str):
        try:
            return path.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidPath(path, "a path must be ASCII",
                              call=call) from None
    return _encode(path, "path", call, InvalidPath)


def validate_path(path: "Text", call: "Optional[str]" = None) -> bytes:
    """Checks a node path and returns it as bytes.

    Raises :class:`InvalidPath` if XenStore would refuse it; ``call``, the
    name of the refusing method, starts the message.
    """
    kind = type(path)
    if kind is bytes or kind is str:
        known = _valid_paths.get(path)
        if known is not None:
            return known
        checked = _check_path(_path_bytes(path, call), call)
        if len(checked) <= _VALID_PATH_LEN:
            if len(_valid_paths) >= _VALID_PATHS_MAX:
                _valid_paths.clear()
            _valid_paths[path] = checked
        return checked
    return _check_path(_path_bytes(path, call), call)


# Paths that passed validate_path() lately: callers use the same few keys
# over and over, and a dict lookup costs far less than the checks. Bounded;
# thread-safe because each dict operation is atomic.
_valid_paths: "Dict[Text, bytes]" = {}
_VALID_PATHS_MAX = 1024
_VALID_PATH_LEN = 256


def path_problem(path: bytes) -> "Optional[str]":
    """Why XenStore would refuse ``path`` (bytes), or None if it is valid."""
    if not path:
        return "empty"
    limit = ABSOLUTE_PATH_MAX if path[:1] == b"/" else RELATIVE_PATH_MAX
    if len(path) > limit:
        return "longer than %d bytes" % limit
    if path.translate(None, _PATH_CHARS):
        return "only ASCII letters, digits and -/_@ are allowed"
    if b"//" in path:
        return "contains //"
    if path.endswith(b"/") and path != b"/":
        return "trailing /"
    return None


def _check_path(path: bytes, call: "Optional[str]" = None) -> bytes:
    problem = path_problem(path)
    if problem is not None:
        raise InvalidPath(path, problem, call=call)
    return path


def validate_watch_path(wpath: "Text", call: "Optional[str]" = None) -> bytes:
    """Like :func:`validate_path`, but also accepts the special ``@`` paths
    (``@releaseDomain/<domid>`` included)."""
    wpath = _path_bytes(wpath, call)
    if wpath.startswith(b"@"):
        if wpath not in SPECIAL_WATCH_PATHS and \
                not _SPECIAL_DOMAIN.match(wpath):
            raise InvalidPath(wpath, "the only special watch paths are "
                                     "@introduceDomain and @releaseDomain "
                                     "(and @releaseDomain/<domid>)",
                              call=call)
        return wpath
    return validate_path(wpath, call)


def validate_token(token: "Any", call: "Optional[str]" = None) -> bytes:
    """Checks a watch token (any bytes but NUL) and returns it as bytes."""
    checked = _encode(token, "token", call, InvalidToken)
    if not checked:
        raise InvalidToken(checked, "a token must not be empty", call=call)
    if b"\x00" in checked:
        raise InvalidToken(checked, "a token must not contain NUL", call=call)
    return checked


def validate_domid(domid: "Any", what: str = "domid", limit: int = DOMID_LIMIT,
                   call: "Optional[str]" = None) -> int:
    """Checks that ``domid`` is an int in ``0 .. limit - 1``.

    The default limit is :data:`DOMID_LIMIT`: Xen's ``domid_t`` is 16 bits.
    Raises :class:`InvalidDomid` (a ValueError) out of range, TypeError for
    anything but an int.
    """
    if isinstance(domid, bool) or not isinstance(domid, int):
        raise TypeError("%s%s must be an int, not %s"
                        % (_prefix(call), what, type(domid).__name__))
    if not 0 <= domid < limit:
        raise InvalidDomid(domid, "out of range 0..%d" % (limit - 1),
                           call=call, what=what)
    return domid


def validate_timeout(timeout: "Any", call: "Optional[str]" = None,
                     what: str = "timeout") -> "Optional[float]":
    """Checks a timeout: None (wait forever) or a finite number of
    seconds in ``0 .. TIMEOUT_MAX``; returns it as a float (or None).

    :raises TypeError: for anything but None, int or float (bool included).
    :raises ValueError: for a negative, infinite or NaN number, or one over
        :data:`TIMEOUT_MAX` (the longest wait ``poll()`` can express).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("%s%s must be a number of seconds or None, not %s"
                        % (_prefix(call), what, type(timeout).__name__))
    if not 0 <= timeout <= TIMEOUT_MAX:  # also false for NaN
        raise ValueError("%s%s must be between 0 and %d seconds, or None to "
                         "wait forever, not %r" % (_prefix(call), what,
                                                   TIMEOUT_MAX, timeout))
    return float(timeout)


def validate_perms(perms: "Iterable[Text]",
                   call: "Optional[str]" = None) -> "List[bytes]":
    """Checks a permission list and returns it as a list of bytes.

    Each item is ``<r|w|b|n><domid>``; the list must not be empty.
    """
    if isinstance(perms, (bytes, str)):
        raise TypeError("%sperms must be a list of permissions, not a single "
                        "%s" % (_prefix(call), type(perms).__name__))
    checked = []
    for perm in perms:
        if isinstance(perm, str):
            try:
                perm = perm.encode("ascii")
            except UnicodeEncodeError:
                raise InvalidPermission(perm, "must be ASCII",
                                        call=call) from None
        perm = _encode(perm, "permission", call, InvalidPayload)
        match = _PERM.match(perm)
        if not match or int(match.group(1)) >= 2 ** 32:
            raise InvalidPermission(perm, "expected <r|w|b|n><domid>",
                                    call=call)
        checked.append(perm)
    if not checked:
        raise InvalidPermission(perms, "at least one permission is needed",
                                call=call)
    return checked


# The names pyxs 0.4 used.
check_path = validate_path
check_watch_path = validate_watch_path
check_perms = validate_perms
