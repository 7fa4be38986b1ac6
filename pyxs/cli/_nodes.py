"""Node commands: read, write, ls, list, rm, mkdir, exists, perms, chmod.

Each handler takes the parsed arguments and returns the exit status;
arguments are checked before anything is sent.
"""

import os

from .._internal import NUL
from .._ops import Op
from ..helpers import validate_path, validate_perms
from ._output import emit, emit_json, emit_raw, escape, json_value, text
from ._parse import UsageError
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Tuple

    Args = Dict[str, Any]

__all__ = ["cmd_read", "cmd_write", "cmd_ls", "cmd_list", "cmd_rm",
           "cmd_mkdir", "cmd_exists", "cmd_perms", "cmd_chmod", "ls_line"]
EXIT_OK, EXIT_ERROR = 0, 1

#: Where ``xenstore-ls -p`` starts the permissions of a short line: the
#: name and value are padded with `` . . .`` up to this column.
LS_PERMS_COLUMN = 60


def _paths(args: "Args", key: str = "paths") -> "List[bytes]":
    return [validate_path(path) for path in args[key]]


def _errno(exc: "Any") -> "Any":
    return exc.args[0] if exc.args else None


def cmd_read(args: "Args") -> int:
    """Prints the value of each path."""
    paths = _paths(args)
    with Session(args) as session:
        values = [(path, session.request(Op.READ, path + NUL, path))
                  for path in paths]
    if args["json"]:
        emit_json({text(path): json_value(value) for path, value in values})
        return EXIT_OK
    for path, value in values:
        prefix = "%s: " % text(path) if args["print_path"] else ""
        if args["raw"]:
            emit_raw(prefix.encode() + value)
        else:
            emit(prefix + escape(value))
    return EXIT_OK


def _value(path: str, value: str, raw: bool) -> bytes:
    data = os.fsencode(value)
    if raw:
        return data
    from ._output import unescape
    try:
        return unescape(data)
    except ValueError as exc:
        raise UsageError("the value for %s %s" % (path, exc),
                         "write") from None


def cmd_write(args: "Args") -> int:
    """Writes the values; several pairs are written in one transaction."""
    pairs = [(validate_path(path), _value(path, value, args["raw"]))
             for path, value in args["pairs"]]
    with Session(args) as session:
        if len(pairs) == 1:
            path, value = pairs[0]
            _ok(session.request(Op.WRITE, path + NUL + value, path),
                Op.WRITE, path)
            return EXIT_OK

        def write_all(tx: "Any") -> None:
            tx.write_many(pairs)

        session.client.run_transaction(write_all)
    return EXIT_OK


def _ok(payload: bytes, op: int, path: bytes) -> None:
    from .._replies import ok
    ok(payload, op, path)


def _below(client: "Any", top: bytes) -> "Iterator[Tuple[bytes, bytes]]":
    """``(path, value)`` of every node below ``top``, top down."""
    nodes = client.walk(top)
    next(nodes)  # top itself
    for path, value, _ in nodes:
        yield path, value


def ls_line(top: bytes, path: bytes, value: bytes, flat: bool,
            perms: "Any" = None) -> str:
    """One line of ``ls``: indented name or full path, the quoted value
    and, when given, the permissions as ``xenstore-ls -p`` shows them."""
    quoted = '"%s"' % escape(value, quote=True)
    if flat:
        line = "%s = %s" % (text(path), quoted)
    else:
        relative = path[len(top):].lstrip(b"/")
        name = relative.rsplit(b"/", 1)[-1]
        line = "%s%s = %s" % (" " * relative.count(b"/"), text(name), quoted)
    if perms is None:
        return line
    line += " "
    if not flat:
        line += "".join(". "[column % 2 == 0] for column in range(
            len(line), LS_PERMS_COLUMN))
    return "%s  (%s)" % (line, ",".join(p.decode("ascii") for p in perms))


def cmd_ls(args: "Args") -> int:
    """Prints the tree below each path, values quoted."""
    tops = _paths(args) or [b"/"]
    client = Session(args).client
    try:
        found: Dict[str, Any] = {}
        for top in tops:
            for path, value in _below(client, top):
                perms = client.get_perms(path) if args["perms"] else None
                if args["json"]:
                    found[text(path)] = json_value(value) if perms is None \
                        else {"value": json_value(value), "perms": [
                            p.decode("ascii") for p in perms]}
                else:
                    emit(ls_line(top, path, value, args["flat"], perms))
    finally:
        client.close()
    if args["json"]:
        emit_json(found)
    return EXIT_OK


def _join(parent: bytes, name: bytes) -> bytes:
    return parent.rstrip(b"/") + b"/" + name


def cmd_list(args: "Args") -> int:
    """Prints the names (or paths) of the children of each path."""
    paths = _paths(args)
    client = Session(args).client
    try:
        names = [_join(path, name) if args["full"] else name
                 for path in paths for name in client.list(path)]
    finally:
        client.close()
    if args["json"]:
        emit_json([text(name) for name in names])
        return EXIT_OK
    for name in names:
        emit(text(name))
    return EXIT_OK


def _parents(path: bytes) -> "Iterator[bytes]":
    """The parents of ``path``, nearest first, without ``/``."""
    while True:
        path = path.rsplit(b"/", 1)[0]
        if not path:
            return
        yield path


def _tidy(tx: "Any", path: bytes) -> None:
    """Removes ``path``, then each parent left with no children."""
    tx.delete(path)
    for parent in _parents(path):
        if tx.list(parent):
            return
        tx.delete(parent)


def cmd_rm(args: "Args") -> int:
    """Removes each path and everything below it."""
    paths = _paths(args)
    with Session(args) as session:
        for path in paths:
            if args["tidy"]:
                session.client.run_transaction(
                    lambda tx, path=path: _tidy(tx, path))
            else:
                _ok(session.request(Op.RM, path + NUL, path), Op.RM, path)
    return EXIT_OK


def cmd_mkdir(args: "Args") -> int:
    """Creates each path (and missing parents)."""
    paths = _paths(args)
    with Session(args) as session:
        for path in paths:
            _ok(session.request(Op.MKDIR, path + NUL, path), Op.MKDIR, path)
    return EXIT_OK


def _exists(session: "Session", path: bytes) -> bool:
    import errno

    from ..exceptions import PyXSError
    try:
        session.request(Op.DIRECTORY, path + NUL, path)
    except PyXSError as exc:
        if _errno(exc) == errno.ENOENT:
            return False
        if _errno(exc) != errno.E2BIG:  # too many children to list at once
            raise
    return True


def cmd_exists(args: "Args") -> int:
    """Exit status 0 if every path exists, 1 if one does not."""
    paths = _paths(args)
    with Session(args) as session:
        found = [(path, _exists(session, path)) for path in paths]
    if args["json"]:
        emit_json(found[0][1] if len(found) == 1 else
                  {text(path): there for path, there in found})
    return EXIT_OK if all(there for _, there in found) else EXIT_ERROR


def cmd_perms(args: "Args") -> int:
    """Prints a node's permissions, owner first."""
    path = validate_path(args["path"])
    client = Session(args).client
    try:
        perms = [perm.decode("ascii") for perm in client.get_perms(path)]
    finally:
        client.close()
    if args["json"]:
        emit_json(perms)
    else:
        emit(" ".join(perms))
    return EXIT_OK


def cmd_chmod(args: "Args") -> int:
    """Sets a node's permissions (below it with -r, above it with -u)."""
    path = validate_path(args["path"])
    perms = validate_perms(args["perms"])
    client = Session(args).client
    try:
        targets = [path]
        if args["recursive"]:
            targets = [node for node, _, _ in client.walk(path)]
        if args["up"]:
            targets += list(_parents(path))
        for target in targets:
            client.set_perms(target, perms)
    finally:
        client.close()
    return EXIT_OK
