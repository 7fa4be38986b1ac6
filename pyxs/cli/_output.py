"""How values look on the command line: Xen's escapes, JSON, output lines.

:func:`escape` renders bytes as ``xenstore-read`` does and :func:`unescape`
reads them back as ``xenstore-write`` does, so the output of one feeds the
other, with pyxs and with Xen's tools alike.
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Union

    JsonValue = Union[str, Dict[str, str]]
__all__ = ["escape", "unescape", "json_value", "text", "emit", "emit_json",
           "emit_raw"]

_NAMED = {0x5c: "\\\\", 0x0a: "\\n", 0x09: "\\t", 0x0d: "\\r"}
_CONTROLS = {ord("n"): 0x0a, ord("t"): 0x09, ord("r"): 0x0d}
_HEX = b"0123456789abcdefABCDEF"
_OCTAL = b"01234567"


def escape(value: bytes, quote: bool = False) -> str:
    """Renders bytes as printable ASCII, as Xen's ``xenstore-read`` does.

    Printable ASCII stays; backslash, newline, tab and carriage return
    become ``\\\\ \\n \\t \\r``; bytes 0 to 7 three octal digits
    (``\\001``), other bytes two hex digits (``\\x1f``, ``\\xff``). With
    ``quote``, ``"`` becomes ``\\"`` too (``ls``, where values are quoted).
    """
    parts = []
    for byte in value:
        if byte in _NAMED:
            parts.append(_NAMED[byte])
        elif quote and byte == 0x22:
            parts.append('\\"')
        elif 0x20 <= byte < 0x7f:
            parts.append(chr(byte))
        elif byte < 0x08:
            parts.append("\\%03o" % byte)
        else:
            parts.append("\\x%02x" % byte)
    return "".join(parts)


def unescape(value: bytes) -> bytes:
    """Reads Xen's escapes, as ``xenstore-write`` does: ``\\\\``, ``\\n``,
    ``\\t``, ``\\r``, ``\\xN[N]`` (hex), ``\\N[N[N]]`` (octal); a backslash
    before any other character stands for that character (``\\"`` is
    ``"``).

    :raises ValueError: for a lone backslash at the end.
    """
    out = bytearray()
    index, end = 0, len(value)
    while index < end:
        byte = value[index]
        index += 1
        if byte != 0x5c:
            out.append(byte)
            continue
        if index == end:
            raise ValueError("ends with a lone backslash (write \\\\ for "
                             "one backslash)")
        byte = value[index]
        index += 1
        if byte == ord("x") and index < end and value[index] in _HEX:
            digits = index
            while index < end and index - digits < 2 and value[index] in _HEX:
                index += 1
            out.append(int(value[digits:index], 16))
        elif byte in _OCTAL:
            digits = index - 1
            while index < end and index - digits < 3 and \
                    value[index] in _OCTAL:
                index += 1
            out.append(int(value[digits:index], 8) & 0xff)
        else:
            out.append(_CONTROLS.get(byte, byte))
    return bytes(out)


def json_value(value: bytes) -> "JsonValue":
    """A value for JSON: text if valid UTF-8, else ``{"base64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        import base64
        return {"base64": base64.b64encode(value).decode("ascii")}


def text(path: bytes) -> str:
    """A path from the daemon as text (paths are ASCII in practice)."""
    return path.decode("utf-8", "backslashreplace")


def emit(line: str) -> None:
    """Prints one line and flushes it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_json(data: "Any") -> None:
    """Prints ``data`` as one line of JSON."""
    import json
    emit(json.dumps(data))


def emit_raw(value: bytes) -> None:
    """Writes bytes unchanged, as ``xenstore-read -R`` does: no newline."""
    sys.stdout.flush()
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
