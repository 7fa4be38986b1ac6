"""Permission entries and the access rules of C xenstored.

The first entry of a node's list names its owner and the access everybody
else gets by default; later entries grant access to single domains, or to
all of them for :data:`~pyxs._features.DOMID_ANY` (Xen 4.22).
"""

from typing import Iterable, NamedTuple, Optional, Tuple

from ..exceptions import InvalidPermission
from ..helpers import validate_perms
from .errors import XenStoreError

__all__ = ["Perm", "Perms", "Who", "NONE", "READ", "WRITE", "BOTH", "OWNER",
           "parse_perms", "format_perms"]

NONE, READ, WRITE = 0, 1, 2
#: An entry for this domid applies to every domain (Xen 4.22).
DOMID_ANY = 0x7FF5
BOTH = READ | WRITE
#: Only the owner (and privileged callers) may change permissions.
OWNER = 4

_MODE_OF = {ord("n"): NONE, ord("r"): READ, ord("w"): WRITE, ord("b"): BOTH}
_LETTER_OF = {NONE: b"n", READ: b"r", WRITE: b"w", BOTH: b"b"}


class Perm(NamedTuple):
    """One ``<letter><domid>`` entry."""

    domid: int
    mode: int

    def __bytes__(self) -> bytes:
        return _LETTER_OF[self.mode] + str(self.domid).encode("ascii")


Perms = Tuple[Perm, ...]


def parse_perms(items: Iterable[bytes]) -> Perms:
    """Parses wire permission strings; EINVAL for any malformed entry."""
    try:
        checked = validate_perms(list(items))
    except InvalidPermission:
        raise XenStoreError("EINVAL") from None
    return tuple(Perm(int(item[1:]), _MODE_OF[item[0]]) for item in checked)


def format_perms(perms: Perms) -> bytes:
    """The GET_PERMS reply body: every entry NUL-terminated."""
    return b"".join(bytes(perm) + b"\x00" for perm in perms)


class Who(NamedTuple):
    """The identity a request runs as: its domain and, if set, its target.

    Domain 0 is privileged and bypasses every permission check.
    """

    domid: int
    target: Optional[int] = None

    @property
    def privileged(self) -> bool:
        """True for dom0, which XenStore never refuses anything."""
        return self.domid == 0

    def access(self, perms: Perms) -> int:
        """The READ/WRITE/OWNER bits this caller has on a node."""
        owner = perms[0].domid
        if self.privileged or owner == self.domid or (
                self.target is not None and owner == self.target):
            return BOTH | OWNER
        for perm in perms[1:]:
            if perm.domid == self.domid or perm.domid == DOMID_ANY or (
                    self.target is not None and perm.domid == self.target):
                return perm.mode
        return perms[0].mode

    def may(self, perms: Perms, need: int) -> bool:
        """Whether every bit of ``need`` is granted."""
        return self.access(perms) & need == need
