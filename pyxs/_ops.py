"""XenStore operation numbers and their names: the leaf of pyxs's imports.

Everything else may import this module; it imports nothing from pyxs but
:mod:`pyxs._startup` (``typing`` costs start-up time).
"""

from ._startup import named_tuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    NamedTuple = object  # named_tuple() makes the class one

__all__ = ["Op", "op_name"]


@named_tuple
class Operation(NamedTuple):
    """Operation numbers by name; ``n in Op`` tells whether ``n`` is known.

    ``CONTROL`` is the current name of op 0, ``DEBUG`` its older alias.
    ``RESTRICT`` keeps the value 128 pyxs 0.4 gave it; no daemon serves it.
    """

    DEBUG: int
    DIRECTORY: int
    READ: int
    GET_PERMS: int
    WATCH: int
    UNWATCH: int
    TRANSACTION_START: int
    TRANSACTION_END: int
    INTRODUCE: int
    RELEASE: int
    GET_DOMAIN_PATH: int
    WRITE: int
    MKDIR: int
    RM: int
    SET_PERMS: int
    WATCH_EVENT: int
    ERROR: int
    IS_DOMAIN_INTRODUCED: int
    RESUME: int
    SET_TARGET: int
    RESTRICT: int
    RESET_WATCHES: int
    DIRECTORY_PART: int
    GET_FEATURE: int
    SET_FEATURE: int
    GET_QUOTA: int
    SET_QUOTA: int
    CONTROL: int

    def name_of(self, op: int) -> str:
        """Returns the protocol name of ``op``, or ``OP<n>`` if unknown."""
        if op == 0:
            return "CONTROL"
        try:
            return self._fields[self.index(op)]
        except ValueError:
            return "OP%d" % op


#: The XenStore operations (see ``xs_wire.h``).
Op = Operation(*(tuple(range(20)) + (128,) + tuple(range(21, 27)) + (0,)))


def op_name(op: int) -> str:
    """Returns the name of an operation number, for messages."""
    return Op.name_of(op)
