"""The one exception the embedded daemon raises internally.

A :class:`XenStoreError` carries the XenStore error name that goes back to
the client as an ``ERROR`` packet (``E<NAME>\\0``).
"""

__all__ = ["XenStoreError"]


class XenStoreError(Exception):
    """A request failed; ``name`` is the wire error name, e.g. ``"ENOENT"``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def payload(self) -> bytes:
        """The ERROR reply body: ``E<NAME>\\0``."""
        return self.name.encode("ascii") + b"\x00"
