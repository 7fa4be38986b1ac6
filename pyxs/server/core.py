"""Request handling: one packet in, a reply (and watch events) out.

:class:`Core` owns the store, the domain table and every session; it never
touches a socket, so the whole protocol can be driven from tests.
"""

import re
from typing import Callable, Dict, List, Optional, Set, Tuple

from .._internal import Op, Packet, encode
from ..exceptions import InvalidPath
from ..helpers import validate_path
from . import tree
from .errors import XenStoreError
from .perms import format_perms, parse_perms
from .quotas import DEFAULT_QUOTAS, Quotas
from .session import DomainUsage, Session
from .store import SPECIAL_PATHS, BaseView, Store, Transaction, View
from .tree import Change
from .watches import Watch, events_for_change, events_for_special

__all__ = ["Core"]

_OK = b"OK\x00"
_LOCAL_HOME = re.compile(rb"/local/domain/\d+/")
_ATOI = re.compile(rb"\s*([+-]?\d+)")
_HELP = (b"check\t\nhelp\t\nprint\t<string>\nquota\t\n")

Handler = Callable[["Core", Session, Optional[Transaction], bytes], bytes]


def _atoi(text: bytes) -> int:
    """C's ``atoi``: leading digits, 0 when there are none."""
    match = _ATOI.match(text)
    return int(match.group(1)) & 0xFFFFFFFF if match else 0


def _strings(payload: bytes) -> List[bytes]:
    """The NUL-terminated strings of a payload (an unterminated tail is
    not one)."""
    return payload.split(b"\x00")[:-1]


def _one_arg(payload: bytes) -> bytes:
    """Exactly one NUL-terminated string, else EINVAL."""
    fields = _strings(payload)
    if len(fields) != 1 or not payload.endswith(b"\x00"):
        raise XenStoreError("EINVAL")
    return fields[0]


def _args(payload: bytes, count: int, exact: bool = True) -> List[bytes]:
    fields = _strings(payload)
    if len(fields) < count or (exact and len(fields) != count):
        raise XenStoreError("EINVAL")
    return fields


class Core:
    """The daemon's brain: store, domains and sessions."""

    def __init__(self, store: Optional[Store] = None,
                 quotas: Quotas = DEFAULT_QUOTAS) -> None:
        self.store = store or Store()
        self.quotas = quotas
        self.sessions: List[Session] = []
        #: Introduced domains, with the generation count at introduction
        #: (grants a node made before that do not apply to the domain).
        self.domains: Dict[int, int] = {0: 0}
        self.targets: Dict[int, int] = {}
        #: Sessions with new output since the daemon last looked.
        self.dirty: Set[Session] = set()
        #: Quota usage per domain, over all of its connections.
        self.usage: Dict[int, DomainUsage] = {}

    # -- sessions -------------------------------------------------------

    def open_session(self, domid: int = 0) -> Session:
        """A new connection acting as ``domid`` (its domain now exists)."""
        session = Session(domid, self.targets, self.usage)
        self.domains.setdefault(domid, self.store.generation)
        self.sessions.append(session)
        return session

    def close_session(self, session: Session) -> None:
        """Forgets a connection with its watches and transactions."""
        if session in self.sessions:
            self.sessions.remove(session)
        session.close()
        self.dirty.discard(session)

    # -- dispatch -------------------------------------------------------

    def handle(self, session: Session, packet: Packet) -> None:
        """Runs one request; queues its reply and any events it causes."""
        handler = _HANDLERS.get(packet.op)
        after: List[Tuple[bytes, bytes]] = []
        try:
            if handler is None:
                raise XenStoreError("ENOSYS")
            tx = None
            if packet.tx_id:
                tx = session.transactions.get(packet.tx_id)
                if tx is None:
                    raise XenStoreError("ENOENT")
            body = handler(self, session, tx, packet.payload)
            if isinstance(body, tuple):
                body, after = body
            frame = encode(packet.op, packet.rq_id, packet.tx_id, body)
        except XenStoreError as error:
            frame = encode(Op.ERROR, packet.rq_id, packet.tx_id,
                           error.payload())
        session.outbox.reply(frame)
        for path, token in after:
            session.outbox.event(path, token)
        self.dirty.add(session)

    # -- helpers for handlers -------------------------------------------

    def node_path(self, session: Session, raw: bytes) -> bytes:
        """Canonical absolute node path, or EINVAL (C's length rules)."""
        if raw.startswith(b"@"):
            raise XenStoreError("EINVAL")
        path = raw if raw.startswith(b"/") else session.home + raw
        try:
            validate_path(path)
        except InvalidPath:
            raise XenStoreError("EINVAL") from None
        home = _LOCAL_HOME.match(path)
        if len(path) - (home.end() if home else 0) > self.quotas.path_max:
            raise XenStoreError("EINVAL")
        return path

    def watch_path(self, session: Session, raw: bytes) -> Watch:
        """A watch for ``raw``; special ``@`` names are kept as given."""
        if raw.startswith(b"@"):
            if len(raw) > self.quotas.path_max:
                raise XenStoreError("EINVAL")
            return Watch(raw, b"")
        path = self.node_path(session, raw)
        return Watch(path, b"", None if raw.startswith(b"/")
                     else session.home)

    def view(self, tx: Optional[Transaction]) -> View:
        """The transaction's view, or the committed tree."""
        return tx if tx is not None else BaseView(self.store)

    def changed(self, tx: Optional[Transaction],
                change: Optional[Change]) -> None:
        """Fires a change now, or keeps it for the transaction's commit."""
        if change is None:
            return
        if tx is not None:
            tx.changes.setdefault((change.path, bool(change.removed)), change)
            return
        for session in self.sessions:
            for path, token in events_for_change(session.watches,
                                                 session.who, change):
                self.queue_event(session, path, token)

    def special_event(self, path: bytes) -> None:
        """Fires ``@introduceDomain`` or ``@releaseDomain``."""
        perms = self.store.special_perms[path]
        for session in self.sessions:
            for event in events_for_special(session.watches, session.who,
                                            path, perms):
                self.queue_event(session, *event)

    def queue_event(self, session: Session, path: bytes,
                    token: bytes) -> None:
        """Queues one event for a session."""
        if session.outbox.event(path, token):
            self.dirty.add(session)

    def privileged(self, session: Session) -> None:
        """EACCES unless the caller is dom0."""
        if not session.who.privileged:
            raise XenStoreError("EACCES")


# -- the operations ------------------------------------------------------

def _read(core: Core, session: Session, tx, payload: bytes) -> bytes:
    path = core.node_path(session, _one_arg(payload))
    return tree.lookup(core.view(tx), session.who, path).value


def _directory(core: Core, session: Session, tx, payload: bytes) -> bytes:
    path = core.node_path(session, _one_arg(payload))
    return tree.directory(tree.lookup(core.view(tx), session.who, path))


def _directory_part(core: Core, session: Session, tx,
                    payload: bytes) -> bytes:
    raw, offset = _args(payload, 2)
    path = core.node_path(session, raw)
    node = tree.lookup(core.view(tx), session.who, path)
    return tree.directory_part(node, _atoi(offset))


def _get_perms(core: Core, session: Session, tx, payload: bytes) -> bytes:
    path = core.node_path(session, _one_arg(payload))
    return format_perms(tree.lookup(core.view(tx), session.who, path).perms)


def _write(core: Core, session: Session, tx, payload: bytes) -> bytes:
    raw, sep, value = payload.partition(b"\x00")
    if not sep:
        raise XenStoreError("EINVAL")
    path = core.node_path(session, raw)
    core.changed(tx, tree.write(core.view(tx), session.who, core.quotas,
                                path, value))
    return _OK


def _mkdir(core: Core, session: Session, tx, payload: bytes) -> bytes:
    path = core.node_path(session, _one_arg(payload))
    core.changed(tx, tree.mkdir(core.view(tx), session.who, core.quotas,
                                path))
    return _OK


def _rm(core: Core, session: Session, tx, payload: bytes) -> bytes:
    path = core.node_path(session, _one_arg(payload))
    core.changed(tx, tree.remove(core.view(tx), session.who, core.quotas,
                                 path))
    return _OK


def _set_perms(core: Core, session: Session, tx, payload: bytes) -> bytes:
    fields = _strings(payload)
    if len(fields) < 2:
        raise XenStoreError("EINVAL")
    perms = parse_perms(fields[1:])
    if fields[0] in SPECIAL_PATHS:
        core.privileged(session)
        core.store.set_special_perms(fields[0], perms)
        return _OK
    path = core.node_path(session, fields[0])
    core.changed(tx, tree.set_perms(core.view(tx), session.who, core.quotas,
                                    path, perms))
    return _OK


def _watch(core: Core, session: Session, tx, payload: bytes):
    raw, token = _args(payload, 2)
    watch = core.watch_path(session, raw)._replace(token=token)
    for known in session.watches:
        if known.path == watch.path and known.token == token:
            raise XenStoreError("EEXIST")
    if not session.who.privileged and \
            session.usage.watches() > core.quotas.watches:
        raise XenStoreError("E2BIG")
    session.watches.append(watch)
    return _OK, [(raw, token)]


def _unwatch(core: Core, session: Session, tx, payload: bytes) -> bytes:
    raw, token = _args(payload, 2)
    try:
        path = core.watch_path(session, raw).path
    except XenStoreError:
        raise XenStoreError("ENOENT") from None  # C only looks it up
    for index, known in enumerate(session.watches):
        if known.path == path and known.token == token:
            del session.watches[index]
            return _OK
    raise XenStoreError("ENOENT")


def _transaction_start(core: Core, session: Session, tx,
                       payload: bytes) -> bytes:
    if tx is not None:
        raise XenStoreError("EBUSY")
    if not session.who.privileged and \
            session.usage.transactions() > core.quotas.transactions:
        raise XenStoreError("ENOSPC")
    tx_id = session.new_tx_id()
    session.transactions[tx_id] = Transaction(core.store, tx_id)
    return b"%d\x00" % tx_id


def _transaction_end(core: Core, session: Session, tx,
                     payload: bytes) -> bytes:
    verdict = _one_arg(payload)
    if verdict not in (b"T", b"F"):
        raise XenStoreError("EINVAL")
    if tx is None:
        raise XenStoreError("ENOENT")
    del session.transactions[tx.tx_id]
    if verdict == b"T":
        before = core.store.nodes.copy()
        tx.commit()
        after = core.store.nodes
        for change in tx.changes.values():
            # C fires per committed node: one that only ever lived inside
            # the transaction fires nothing.
            if change.path in before or change.path in after:
                core.changed(None, change._replace(removed=tuple(
                    item for item in change.removed if item[0] in before)))
    return _OK


def _introduce(core: Core, session: Session, tx, payload: bytes) -> bytes:
    core.privileged(session)
    domid = _atoi(_args(payload, 3, exact=False)[0])
    if domid not in core.domains:
        core.domains[domid] = core.store.generation
        core.special_event(b"@introduceDomain")
    return _OK


def _introduced_domain(core: Core, session: Session, payload: bytes) -> int:
    """The domid of RELEASE/RESUME: privileged, never 0, introduced."""
    core.privileged(session)
    domid = _atoi(_one_arg(payload))
    if domid == 0:
        raise XenStoreError("EINVAL")
    if domid not in core.domains:
        raise XenStoreError("ENOENT")
    return domid


def _release(core: Core, session: Session, tx, payload: bytes) -> bytes:
    domid = _introduced_domain(core, session, payload)
    del core.domains[domid]
    core.targets.pop(domid, None)
    for change in tree.release_domain(core.view(None), domid):
        core.changed(None, change)
    for other in core.sessions:
        if other.domid == domid:
            other.closing = True
            core.dirty.add(other)
    core.special_event(b"@releaseDomain")
    return _OK


def _resume(core: Core, session: Session, tx, payload: bytes) -> bytes:
    _introduced_domain(core, session, payload)
    return _OK


def _set_target(core: Core, session: Session, tx, payload: bytes) -> bytes:
    core.privileged(session)
    domid, target = (_atoi(arg) for arg in _args(payload, 2, exact=False)[:2])
    if domid not in core.domains or target not in core.domains:
        raise XenStoreError("ENOENT")
    core.targets[domid] = target
    return _OK


def _is_domain_introduced(core: Core, session: Session, tx,
                          payload: bytes) -> bytes:
    core.privileged(session)
    return b"T\x00" if _atoi(_one_arg(payload)) in core.domains else b"F\x00"


def _get_domain_path(core: Core, session: Session, tx,
                     payload: bytes) -> bytes:
    return b"/local/domain/%d\x00" % _atoi(_one_arg(payload))


def _reset_watches(core: Core, session: Session, tx, payload: bytes) -> bytes:
    session.watches.clear()
    session.transactions.clear()
    return _OK


def _control(core: Core, session: Session, tx, payload: bytes) -> bytes:
    core.privileged(session)
    fields = _strings(payload)
    command = fields[0] if fields else b""
    if command in (b"print", b"check"):
        return _OK
    if command == b"help":
        return _HELP + b"\x00"
    if command == b"quota":
        lines = ["%-18s: %8d" % (name.replace("_", "-"), value)
                 for name, value in core.quotas._asdict().items()]
        return ("Quota settings:\n" + "\n".join(lines) + "\n").encode() \
            + b"\x00"
    raise XenStoreError("EINVAL")


_HANDLERS: Dict[int, Handler] = {
    Op.CONTROL: _control, Op.DIRECTORY: _directory, Op.READ: _read,
    Op.GET_PERMS: _get_perms, Op.WATCH: _watch, Op.UNWATCH: _unwatch,
    Op.TRANSACTION_START: _transaction_start,
    Op.TRANSACTION_END: _transaction_end, Op.INTRODUCE: _introduce,
    Op.RELEASE: _release, Op.GET_DOMAIN_PATH: _get_domain_path,
    Op.WRITE: _write, Op.MKDIR: _mkdir, Op.RM: _rm,
    Op.SET_PERMS: _set_perms,
    Op.IS_DOMAIN_INTRODUCED: _is_domain_introduced, Op.RESUME: _resume,
    Op.SET_TARGET: _set_target, Op.RESET_WATCHES: _reset_watches,
    Op.DIRECTORY_PART: _directory_part,
}
