"""Argument handling of :mod:`pyxs._compat`, as ``xen.lowlevel.xs`` does it.

Pure functions, no I/O. The binding parses its arguments with CPython's
``PyArg_ParseTuple``; where it refuses an argument, these functions raise
the same exception type with the same message, so a script's error
handling sees no difference. Where pyxs 0.4 accepted more (bytes paths, int
or ``None`` transaction handles, permission strings), they accept it too.
"""

import re
from typing import Any, Dict, List, Optional, Union

__all__ = ["Handle", "Perm", "parse_handle", "check_type", "check_path",
           "check_handle", "check_value", "check_int", "check_domid",
           "perm_dict", "perm_strings"]

Handle = Union[str, bytes, int, None]
Perm = Dict[str, int]

# strtoul(s, NULL, 16): optional blanks, an optional sign, an optional 0x
# before a hexadecimal digit, then digits; the rest is ignored.
_STRTOUL16 = re.compile(
    r"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)")
_ULONG_MAX = 2 ** 64 - 1
_PERM_BITS = {"n": 0, "r": 1, "w": 2, "b": 3}
_PERM_KEYS = ("dom", "read", "write")
_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1


def _type_error(argno: int, expected: str, value: Any) -> TypeError:
    name = "None" if value is None else type(value).__name__
    return TypeError("argument %d must be %s, not %s"
                     % (argno, expected, name))


def _no_nul(text: str) -> str:
    if "\0" in text:
        raise ValueError("embedded null character")
    return text


def parse_handle(t: Any) -> int:
    """A transaction handle as a transaction id (0: none).

    Strings and bytes as the binding reads them, ``strtoul(t, NULL, 16)``
    truncated to the 32 bits of a transaction id; ``None`` and ``""`` are
    no transaction; an int is the id itself.
    """
    if t is None:
        return 0
    if isinstance(t, int):
        return t % 2 ** 32
    if isinstance(t, bytes):
        text = t.split(b"\0", 1)[0].decode("latin-1")
    elif isinstance(t, str):
        text = _no_nul(t)
    else:
        raise _type_error(1, "str", t)
    match = _STRTOUL16.match(text)
    assert match is not None  # every part of the pattern may be empty
    sign, digits = match.groups()
    value = int(digits, 16) if digits else 0
    if value > _ULONG_MAX:
        value = _ULONG_MAX  # strtoul saturates (ERANGE), sign or not
    elif sign == "-":
        value = -value % 2 ** 64
    return value % 2 ** 32


def check_type(t: Any, path: Any, call: str, first: int = 2) -> None:
    """Refuses a handle or path of a type neither the binding nor pyxs 0.4
    takes, with the binding's message; ``first`` is the path's position
    (1 for calls without a handle)."""
    if first == 2:
        check_handle(t)
    if not isinstance(path, (str, bytes)):
        raise _type_error(first, "str", path)


def check_handle(t: Any) -> None:
    """Refuses a handle of a type neither the binding nor pyxs 0.4 takes."""
    if not isinstance(t, (str, bytes, int, type(None))):
        raise _type_error(1, "str", t)


def check_path(path: Union[str, bytes]) -> bytes:
    """A path as the bytes sent: str is UTF-8, as the binding encodes it."""
    if isinstance(path, str):
        return _no_nul(path).encode("utf-8")
    return path


def check_value(data: Any) -> bytes:
    """A value to write: str (UTF-8) or bytes, as the binding takes."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        raise _type_error(3, "read-only bytes-like object", data)
    raise TypeError("a bytes-like object is required, not '%s'"
                    % type(data).__name__)


def _c_int(value: Any, bits: int = 32) -> int:
    """``value`` as C's ``int`` (``long`` for 64 bits) of PyArg_ParseTuple."""
    if not isinstance(value, int):
        index = getattr(type(value), "__index__", None)
        if index is None:
            raise TypeError("'%s' object cannot be interpreted as an "
                            "integer" % type(value).__name__)
        value = index(value)
    if bits == 64:
        if not -2 ** 63 <= value < 2 ** 63:
            raise OverflowError("Python int too large to convert to C long")
        return int(value)
    if value > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if value < _INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return int(value)


def check_int(value: Any) -> int:
    """An int argument as PyArg_ParseTuple's ``i`` reads it."""
    return _c_int(value)


def check_domid(value: Any, argno: int, bits: int = 32) -> bytes:
    """A domain id (or page number) as the decimal the binding sends: read
    as a C int, sent unsigned (``-1`` is 4294967295)."""
    del argno  # the binding's message for ints names no position
    return b"%d" % (_c_int(value, bits) % 2 ** bits)


def perm_dict(perm: bytes) -> Perm:
    """One permission string as the binding's dict: ``read`` is the bit 1,
    ``write`` the bit 2, ``dom`` a C int."""
    bits = _PERM_BITS.get(perm[:1].decode("latin-1"), 0)
    dom = int(perm[1:]) % 2 ** 32
    if dom > _INT_MAX:
        dom -= 2 ** 32
    return {"dom": dom, "read": bits & 1, "write": bits & 2}


def _perm_from_dict(item: Dict[Any, Any]) -> bytes:
    # The binding parses each dict as keyword arguments of "i|ii": the
    # arguments first, in order, then the keys left over.
    if "dom" not in item:
        raise TypeError("function missing required argument 'dom' (pos 1)")
    dom, read, write = (_c_int(item.get(key, 0)) for key in _PERM_KEYS)
    for key in item:
        if not isinstance(key, str):
            raise TypeError("keywords must be strings")
        if key not in _PERM_KEYS:
            raise TypeError("'%s' is an invalid keyword argument for this "
                            "function" % key)
    kind = "b" if read and write else "r" if read else "w" if write else "n"
    return b"%s%d" % (kind.encode(), dom % 2 ** 32)


def perm_strings(perms: Any) -> Optional[List[bytes]]:
    """A permission list (dicts, or pyxs 0.4's strings) as the strings
    sent; None for what the binding refuses with EINVAL (not a list).

    As the binding, a first entry granting access to a domain other than 0
    cannot be the owner: dom0 goes first as owner, without access.
    """
    if not isinstance(perms, list):
        return None
    strings: List[bytes] = []
    for item in perms:
        if isinstance(item, dict):
            strings.append(_perm_from_dict(item))
        elif isinstance(item, (bytes, str)):
            strings.append(item.encode("latin-1")
                           if isinstance(item, str) else item)
        else:
            raise TypeError("a permission must be a dict (or a permission "
                            "string), not %s" % type(item).__name__)
    if strings and strings[0][:1] != b"n" and strings[0][1:] != b"0" and \
            isinstance(perms[0], dict):
        strings.insert(0, b"n0")
    return strings
