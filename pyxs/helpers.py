"""Validation and conversion helpers shared by the client and the daemon.

The rules are XenStore's own (see ``docs/misc/xenstore.txt``): checking them
here means a bad argument is refused before anything reaches the daemon.
"""

import re
from typing import Any, Dict, Iterable, List, Union

from .exceptions import (
    InvalidPath,
    InvalidPermission,
    InvalidToken,
    PyXSError,
    error_for,
)

__all__ = ["error", "force_bytes", "validate_path", "validate_watch_path",
           "validate_perms", "validate_token", "validate_domid",
           "ABSOLUTE_PATH_MAX", "RELATIVE_PATH_MAX", "SPECIAL_WATCH_PATHS"]

#: Longest absolute path XenStore accepts.
ABSOLUTE_PATH_MAX = 3072
#: Longest relative path XenStore accepts.
RELATIVE_PATH_MAX = 2048
#: The watch-only paths that fire on domain introduction and release.
SPECIAL_WATCH_PATHS = (b"@introduceDomain", b"@releaseDomain")

_PATH_CHARS = re.compile(rb"[a-zA-Z0-9\-/_@]+\Z")
_PERM = re.compile(rb"[wrbn](\d+)\Z")
# One domain's special watch (Xen 4.22, needs WATCHDEPTH).
_SPECIAL_DOMAIN = re.compile(rb"@(introduceDomain|releaseDomain)/"
                             rb"(0|[1-9][0-9]{0,4})\Z")

Text = Union[bytes, str]


def error(smth: Any) -> PyXSError:
    """Returns a :class:`PyXSError` for an errno value or an error name.

    >>> error("ENOENT").args[0] == 2
    True
    """
    return error_for(smth)


def force_bytes(value: Any, what: str = "value",
                encoding: str = "utf-8") -> bytes:
    """Converts ``str`` to bytes; refuses every other non-bytes type."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode(encoding)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be bytes or str, not %s"
                    % (what, type(value).__name__))


def _path_bytes(path: Any) -> bytes:
    if isinstance(path, str):
        try:
            return path.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidPath(path, "a path must be ASCII") from None
    return force_bytes(path, "path")


def validate_path(path: Text) -> bytes:
    """Checks a node path and returns it as bytes.

    Raises :class:`InvalidPath` if XenStore would refuse it.
    """
    kind = type(path)
    if kind is bytes or kind is str:
        known = _valid_paths.get(path)
        if known is not None:
            return known
        checked = _check_path(_path_bytes(path))
        if len(checked) <= _VALID_PATH_LEN:
            if len(_valid_paths) >= _VALID_PATHS_MAX:
                _valid_paths.clear()
            _valid_paths[path] = checked
        return checked
    return _check_path(_path_bytes(path))


# Paths that passed validate_path() lately: callers use the same few keys
# over and over, and a dict lookup costs far less than the checks. Bounded;
# thread-safe because each dict operation is atomic.
_valid_paths: Dict[Text, bytes] = {}
_VALID_PATHS_MAX = 1024
_VALID_PATH_LEN = 256


def _check_path(path: bytes) -> bytes:
    if not path:
        raise InvalidPath(path, "empty")
    limit = ABSOLUTE_PATH_MAX if path[:1] == b"/" else RELATIVE_PATH_MAX
    if len(path) > limit:
        raise InvalidPath(path, "longer than %d bytes" % limit)
    if not _PATH_CHARS.match(path):
        raise InvalidPath(path, "only ASCII letters, digits and -/_@ "
                                "are allowed")
    if b"//" in path:
        raise InvalidPath(path, "contains //")
    if path.endswith(b"/") and path != b"/":
        raise InvalidPath(path, "trailing /")
    return path


def validate_watch_path(wpath: Text) -> bytes:
    """Like :func:`validate_path`, but also accepts the special ``@`` paths
    (``@releaseDomain/<domid>`` included)."""
    wpath = _path_bytes(wpath)
    if wpath.startswith(b"@"):
        if wpath not in SPECIAL_WATCH_PATHS and \
                not _SPECIAL_DOMAIN.match(wpath):
            raise InvalidPath(wpath, "the only special watch paths are "
                                     "@introduceDomain and @releaseDomain "
                                     "(and @releaseDomain/<domid>)")
        return wpath
    return validate_path(wpath)


def validate_token(token: Any) -> bytes:
    """Checks a watch token (any bytes but NUL) and returns it as bytes."""
    token = force_bytes(token, "token")
    if not token:
        raise InvalidToken(token, "a token must not be empty")
    if b"\x00" in token:
        raise InvalidToken(token, "a token must not contain NUL")
    return token


def validate_domid(domid: Any, what: str = "domid",
                   limit: int = 2 ** 32) -> int:
    """Checks that ``domid`` is a domain id (a non-negative 32-bit int)."""
    if isinstance(domid, bool) or not isinstance(domid, int):
        raise TypeError("%s must be an int, not %s"
                        % (what, type(domid).__name__))
    if not 0 <= domid < limit:
        raise ValueError("%s %d is out of range" % (what, domid))
    return domid


def validate_perms(perms: Iterable[Text]) -> List[bytes]:
    """Checks a permission list and returns it as a list of bytes.

    Each item is ``<r|w|b|n><domid>``; the list must not be empty.
    """
    if isinstance(perms, (bytes, str)):
        raise TypeError("perms must be a list of permissions, not a single "
                        "%s" % type(perms).__name__)
    checked = []
    for perm in perms:
        if isinstance(perm, str):
            try:
                perm = perm.encode("ascii")
            except UnicodeEncodeError:
                raise InvalidPermission(perm, "must be ASCII") from None
        perm = force_bytes(perm, "permission")
        match = _PERM.match(perm)
        if not match or int(match.group(1)) >= 2 ** 32:
            raise InvalidPermission(perm, "expected <r|w|b|n><domid>")
        checked.append(perm)
    if not checked:
        raise InvalidPermission(perms, "at least one permission is needed")
    return checked


# The names pyxs 0.4 used.
check_path = validate_path
check_watch_path = validate_watch_path
check_perms = validate_perms
