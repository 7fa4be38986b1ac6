"""A stand-in for Xen's ``xen.lowlevel.xs`` C binding, built on pyxs.

Scripts written for the binding run unchanged with::

    from pyxs._compat import xs, Error

    handle = xs()
    t = handle.transaction_start()
    handle.write(t, "/vm/1/state", "running")
    handle.transaction_end(t)

As with the binding (Python 3 build): values read are ``bytes``; names,
paths, domain paths and transaction handles are ``str``; a transaction
handle is the daemon's transaction id in hexadecimal, and ``""`` (or
``"0"``, or ``None``) means no transaction. Daemon errors raise
:class:`Error` carrying ``(errno, strerror)``.

One connection serves everything: the ``xs`` object's client, its monitor
and one client per open transaction share a :class:`~pyxs.router.Router`,
so several transactions may be open at once.
"""

import errno
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from ._internal import Op
from .client import Client, Monitor
from .connection import default_xenbus_path
from .exceptions import InvalidPayload, InvalidToken, PyXSError, _InvalidValue

__all__ = ["xs", "Error"]

T = TypeVar("T")
Handle = Union[str, bytes, None]
Perm = Dict[str, Any]

_HEX_PREFIX = re.compile(r"\s*(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)")
_PERM_KEYS = ("dom", "read", "write")


class Error(PyXSError, RuntimeError):
    """A XenStore error, as ``xen.lowlevel.xs.Error``.

    ``args == (errno, strerror)``; like the binding's exception it is a
    :class:`RuntimeError`, and it is a :class:`~pyxs.exceptions.PyXSError`
    so that pyxs users catch it too.
    """


def _error(number: int, text: Optional[str] = None) -> Error:
    return Error(number, text if text is not None else os.strerror(number))


def _translate(exc: PyXSError) -> Error:
    """Turns any pyxs error into :class:`Error` with an int errno.

    Daemon errors keep their errno; an error name this system does not know
    becomes EINVAL, as libxenstore makes it. Arguments pyxs refuses before
    sending become EINVAL (E2BIG for an oversized payload), which the
    daemon or libxenstore would have answered; connection failures keep the
    OS errno when there is one, else EIO.
    """
    if isinstance(exc, Error):
        return exc
    number: Any = exc.errno
    if isinstance(number, int) and isinstance(exc.strerror, str):
        result = _error(number, exc.strerror)
    elif isinstance(number, str):
        result = _error(errno.EINVAL, "%s (%s)" % (
            os.strerror(errno.EINVAL), number))
    elif isinstance(exc, InvalidPayload) and \
            not isinstance(exc, InvalidToken):
        result = _error(errno.E2BIG, str(exc))
    elif isinstance(exc, _InvalidValue):
        result = _error(errno.EINVAL, str(exc))
    else:
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) and cause.errno \
            else errno.EIO
        result = _error(code, str(exc))
    result.with_context(exc.op, exc.path)
    return result


def _parse_handle(t: Handle) -> int:
    """Reads a transaction handle as the binding does (``strtoul(t, 16)``).

    Leading hexadecimal digits count, anything after them is ignored, and a
    handle without digits (``""``) means no transaction.
    """
    if t is None:
        return 0
    if isinstance(t, bytes):
        t = t.decode("ascii", "replace")
    if not isinstance(t, str):
        raise TypeError("transaction must be str, not %s"
                        % type(t).__name__)
    match = _HEX_PREFIX.match(t)
    digits = match.group(1) if match else ""
    return int(digits, 16) % 2 ** 32 if digits else 0


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _perm_dict(perm: bytes) -> Perm:
    kind = perm[:1]
    return {"dom": int(perm[1:]), "read": kind in (b"r", b"b"),
            "write": kind in (b"w", b"b")}


def _perm_entry(item: Any) -> Tuple[int, bool, bool]:
    """Reads one permission dict: ``dom`` required, ``read``/``write``
    optional (false), no other key."""
    if not isinstance(item, dict):
        raise TypeError("a permission must be a dict, not %s"
                        % type(item).__name__)
    unknown = set(item) - set(_PERM_KEYS)
    if unknown:
        raise TypeError("unexpected permission key(s): %s"
                        % ", ".join(sorted(map(repr, unknown))))
    if "dom" not in item:
        raise TypeError("a permission needs a 'dom' key")
    values = []
    for key in _PERM_KEYS:
        value = item.get(key, 0)
        if not isinstance(value, int):
            raise TypeError("permission %r must be an int, not %s"
                            % (key, type(value).__name__))
        values.append(value)
    return values[0], bool(values[1]), bool(values[2])


def _perm_string(dom: int, read: bool, write: bool) -> str:
    kind = "b" if read and write else "r" if read else "w" if write else "n"
    return "%s%d" % (kind, dom)


class xs:  # noqa: N801 -- the binding's class name
    """A XenStore connection, as ``xen.lowlevel.xs.xs``; opens on creation.

    :param readonly: accepted for compatibility and ignored: current
        daemons have no separate read-only socket.
    :param unix_socket_path: the daemon's socket; when neither path is
        given, the default socket is tried, then the XenBus device (as
        libxenstore's ``xs_open``).
    :param xen_bus_path: the XenBus device, used when given alone.
    :raises Error: if no connection can be opened.
    """

    def __init__(self, readonly: int = 0,
                 unix_socket_path: Optional[str] = None,
                 xen_bus_path: Optional[str] = None) -> None:
        self._lock = threading.Lock()
        self._closed = True
        self._transactions: Dict[int, Client] = {}
        self._tokens: Dict[bytes, List[Any]] = {}  # wire -> [object, count]
        client = self._open(unix_socket_path, xen_bus_path)
        self._client = client
        monitor = Monitor(client)
        try:
            monitor.client.connect()
        except PyXSError as exc:
            client.close()
            raise _translate(exc) from exc
        self._monitor = monitor
        self._closed = False

    @staticmethod
    def _open(unix_socket_path: Optional[str],
              xen_bus_path: Optional[str]) -> Client:
        client = Client(unix_socket_path, xen_bus_path)
        try:
            client.connect()
            return client
        except PyXSError as exc:
            if unix_socket_path or xen_bus_path:
                raise _translate(exc) from exc
            first = exc
        fallback = Client(xen_bus_path=default_xenbus_path())
        try:
            fallback.connect()
        except PyXSError:
            raise _translate(first) from first
        return fallback

    def __repr__(self) -> str:
        state = "closed" if self._closed else repr(
            self._client.router.connection)
        return "<xs %s>" % state

    def __enter__(self) -> "xs":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._closed:
            self.close()

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:  # never raise from a finaliser
            pass

    # -- plumbing ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _error(errno.EINVAL)  # what the binding raises once closed

    def _call(self, t: Handle, func: Callable[[Client], T]) -> T:
        """Runs ``func`` with the client of transaction ``t``."""
        self._check_open()
        tx_id = _parse_handle(t)
        with self._lock:
            client = self._transactions.get(tx_id) if tx_id else self._client
        transient = client is None
        if client is None:
            # Not one of ours: send it anyway and let the daemon answer, as
            # the binding does.
            client = Client(router=self._client.router)
            client.connect()
            client.tx_id = tx_id
        try:
            return func(client)
        except PyXSError as exc:
            raise _translate(exc) from exc
        finally:
            if transient:
                client.close()

    def _do(self, func: Callable[[], T]) -> T:
        """Runs ``func`` outside transactions, translating errors."""
        self._check_open()
        try:
            return func()
        except PyXSError as exc:
            raise _translate(exc) from exc

    # -- nodes ------------------------------------------------------------

    def read(self, t: Handle, path: str) -> Optional[bytes]:
        """Returns the value at ``path`` as bytes, None if it does not
        exist."""
        def read(client: Client) -> Optional[bytes]:
            try:
                return client.read(path)
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
        return self._call(t, read)

    def write(self, t: Handle, path: str, data: Union[str, bytes]) -> None:
        """Writes ``data`` (str is UTF-8 encoded) at ``path``."""
        self._call(t, lambda client: client.write(path, data))

    def mkdir(self, t: Handle, path: str) -> None:
        """Creates ``path`` (and missing parents)."""
        self._call(t, lambda client: client.mkdir(path))

    def rm(self, t: Handle, path: str) -> None:
        """Removes ``path`` and its children; a missing path (or parent) is
        fine."""
        def rm(client: Client) -> None:
            try:
                client.delete(path)
            except PyXSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        self._call(t, rm)

    def ls(self, t: Handle, path: str) -> Optional[List[str]]:
        """Returns the names of the children of ``path``, None if it does
        not exist."""
        def ls(client: Client) -> Optional[List[str]]:
            try:
                return [_text(name) for name in client.list(path)]
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
        return self._call(t, ls)

    def get_permissions(self, t: Handle, path: str) -> List[Perm]:
        """Returns the permissions of ``path``, owner first, as dicts
        ``{'dom': int, 'read': bool, 'write': bool}``."""
        perms = self._call(t, lambda client: client.get_perms(path))
        return [_perm_dict(perm) for perm in perms]

    def set_permissions(self, t: Handle, path: str, perms: List[Perm]) -> None:
        """Sets the permissions of ``path`` from dicts as
        :meth:`get_permissions` returns (``read``/``write`` default false).

        As in the binding, a first entry granting access to a domain other
        than 0 cannot be the owner: dom0 is then put first as owner, with
        no default access.
        """
        self._check_open()
        if not isinstance(perms, (list, tuple)):
            raise _error(errno.EINVAL, "perms must be a list of dicts")
        entries = [_perm_entry(item) for item in perms]
        if entries and entries[0][0] != 0 and (entries[0][1] or
                                               entries[0][2]):
            entries.insert(0, (0, False, False))
        strings = [_perm_string(*entry) for entry in entries]
        self._call(t, lambda client: client.set_perms(path, strings))

    # -- watches ----------------------------------------------------------

    def watch(self, path: str, token: Any) -> None:
        """Watches ``path``; :meth:`read_watch` gives ``token`` (any object,
        compared by identity) back with each event."""
        self._check_open()
        wire = b"%d" % id(token)
        with self._lock:
            entry = self._tokens.setdefault(wire, [token, 0])
            entry[1] += 1
        try:
            self._monitor.watch(path, wire)
        except PyXSError as exc:
            self._forget(wire)
            raise _translate(exc) from exc

    def _forget(self, wire: bytes) -> None:
        with self._lock:
            entry = self._tokens.get(wire)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._tokens[wire]

    def unwatch(self, path: str, token: Any) -> None:
        """Stops the watch set by ``watch(path, token)``."""
        self._check_open()
        wire = b"%d" % id(token)
        try:
            self._monitor.unwatch(path, wire)
        except PyXSError as exc:
            raise _translate(exc) from exc
        finally:
            self._forget(wire)

    def read_watch(self) -> Tuple[str, Any]:
        """Waits for a watch event and returns ``(path, token)``.

        Events of watches already removed are skipped.
        """
        self._check_open()
        while True:
            try:
                path, wire = self._monitor.get(unwatched=True)
            except PyXSError as exc:
                raise _translate(exc) from exc
            with self._lock:
                entry = self._tokens.get(wire)
            if entry is not None:
                return _text(path), entry[0]

    def fileno(self) -> int:
        """A descriptor readable while watch events are pending, for
        ``select`` (as ``xs_fileno``)."""
        self._check_open()
        return self._monitor.fileno()

    # -- transactions -------------------------------------------------------

    def transaction_start(self) -> str:
        """Starts a transaction; returns its handle (hexadecimal id)."""
        self._check_open()
        client = Client(router=self._client.router)
        try:
            client.connect()
            tx_id = client.transaction()
        except PyXSError as exc:
            client.close()
            raise _translate(exc) from exc
        with self._lock:
            self._transactions[tx_id] = client
        return "%X" % tx_id

    def transaction_end(self, transaction: Handle, abort: int = 0) -> bool:
        """Commits (or with ``abort``, abandons) a transaction.

        :returns: False if the commit conflicted (EAGAIN) and must be
            redone, True otherwise.
        """
        self._check_open()
        tx_id = _parse_handle(transaction)
        with self._lock:
            client = self._transactions.pop(tx_id, None) if tx_id else None
        if client is None:
            # Unknown here: the daemon decides (it refuses with ENOENT).
            command = b"F\x00" if abort else b"T\x00"
            return self._end_unknown(transaction, command)
        try:
            if abort:
                client.rollback()
                return True
            return client.commit()
        except PyXSError as exc:
            raise _translate(exc) from exc
        finally:
            client.close()

    def _end_unknown(self, transaction: Handle, command: bytes) -> bool:
        def end(client: Client) -> bool:
            try:
                client.execute_command(Op.TRANSACTION_END, command)
            except PyXSError as exc:
                if exc.errno == errno.EAGAIN:
                    return False
                raise
            return True
        return self._call(transaction, end)

    # -- domains ------------------------------------------------------------

    def introduce_domain(self, dom: int, page: int, port: int) -> None:
        """Tells the daemon to talk to domain ``dom``."""
        self._do(lambda: self._client.introduce_domain(dom, page, port))

    def release_domain(self, dom: int) -> None:
        """Tells the daemon to forget domain ``dom``."""
        self._do(lambda: self._client.release_domain(dom))

    def resume_domain(self, dom: int) -> None:
        """Clears the daemon's shutdown flag for domain ``dom``."""
        self._do(lambda: self._client.resume_domain(dom))

    def set_target(self, dom: int, target: int) -> None:
        """Lets domain ``dom`` act on domain ``target``'s nodes."""
        self._do(lambda: self._client.set_target(dom, target))

    def get_domain_path(self, domid: int) -> Optional[str]:
        """Returns the home path of domain ``domid``."""
        def get() -> Optional[str]:
            try:
                return _text(self._client.get_domain_path(domid))
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
        return self._do(get)

    # -- life cycle ---------------------------------------------------------

    def close(self) -> None:
        """Closes the connection; open transactions are abandoned, watches
        dropped. Any later call raises :class:`Error` (EINVAL)."""
        self._check_open()
        self._closed = True
        with self._lock:
            clients = list(self._transactions.values())
            self._transactions.clear()
            self._tokens.clear()
        # Closing the connection first drops the watches without a round
        # trip (safe from a finaliser, whatever thread runs it); a
        # read_watch() blocked in another thread then raises Error.
        self._client.router.terminate()
        for client in clients:
            client.close()
        self._monitor.__exit__(None, None, None)
        self._client.close()

