"""Start-up helpers: what the ``pyxs`` command's modules use instead of
costly imports (see benchmarks/startup.py).

:func:`named_tuple` gives a class written as a :class:`typing.NamedTuple`
without importing :mod:`typing` at run time; :class:`LazyPattern` compiles
a regular expression on its first use, not at import.
"""

import collections

TYPE_CHECKING = False  # mypy reads any name TYPE_CHECKING as true
if TYPE_CHECKING:
    import re
    from typing import Any, Optional, Type, TypeVar

    T = TypeVar("T")

__all__ = ["named_tuple", "LazyPattern"]

_NOT_COPIED = ("__dict__", "__weakref__", "__module__")


def named_tuple(cls: "Type[T]") -> "Type[T]":
    """Turns a class of annotated fields into a named tuple at run time.

    Write the class as a :class:`typing.NamedTuple` whose base, for type
    checkers only, is ``typing.NamedTuple`` (``object`` at run time); its
    fields (in order), methods, docstring and annotations end up on a
    :func:`collections.namedtuple` class, as typing itself does it. Field
    defaults are not supported.
    """
    names = vars(cls)
    fields = tuple(names.get("__annotations__", {}))
    if any(field in names for field in fields):
        raise TypeError("%s: named_tuple fields take no defaults"
                        % cls.__name__)
    record = collections.namedtuple(  # type: ignore[misc]
        cls.__name__, fields, module=cls.__module__)
    for name, value in names.items():
        if name not in _NOT_COPIED:
            setattr(record, name, value)
    return record  # type: ignore[return-value]


class LazyPattern:
    """A bytes regular expression compiled when first matched."""

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._compiled: "Optional[re.Pattern[bytes]]" = None

    def match(self, data: "Any") -> "Optional[re.Match[bytes]]":
        """``re.compile(pattern).match(data)``."""
        compiled = self._compiled
        if compiled is None:
            import re
            compiled = self._compiled = re.compile(self.pattern)
        return compiled.match(data)
