"""A stand-in for Xen's ``xen.lowlevel.xs`` C binding, built on pyxs.

Scripts written for the binding run unchanged with::

    from pyxs._compat import xs, Error

    handle = xs()
    t = handle.transaction_start()
    handle.write(t, "/vm/1/state", "running")
    handle.transaction_end(t)

Invariants (each checked against the real binding by
``tests/test_binding_differential.py``):

* Paths may be ``str`` (the binding's form) or ``bytes`` (pyxs 0.4's
  form); names and event paths come back in the type of the path given,
  as :func:`os.listdir` does. Values read are always ``bytes``.
* A transaction handle is the daemon's transaction id in hexadecimal
  (``transaction_start()`` returns ``'1'``). String handles are parsed with
  C's ``strtoul(handle, NULL, 16)`` rules, so ``'-1'`` names transaction
  0xFFFFFFFF, which nobody has; ``""``, ``b""``, ``None`` and ``0`` mean no
  transaction; an int is the id itself.
* Every error is :class:`Error`, a :class:`RuntimeError` with
  ``args == (errno, os.strerror(errno))``; pyxs's own explanation (which
  call, which path) is in :attr:`Error.detail` and in ``str()``.
* The daemon judges paths the binding does not check itself: special watch
  paths such as ``@foo`` go to the daemon unchecked.
* ``fileno()`` is readable exactly while :meth:`xs.check_watch` would
  return an event.

One connection serves everything: the ``xs`` object's client, its watches
and one client per open transaction share a :class:`~pyxs.router.Router`,
so several transactions may be open at once.
"""

import errno
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from ._compat_args import (
    Handle,
    Perm,
    check_domid,
    check_handle,
    check_int,
    check_path,
    check_type,
    check_value,
    parse_handle,
    perm_dict,
    perm_strings,
)
from ._compat_events import EventSink
from ._internal import NUL, PAYLOAD_MAX, Op
from .client import Client
from .connection import default_xenbus_path
from .exceptions import InvalidPayload, PyXSError, _context

__all__ = ["xs", "Error"]

T = TypeVar("T")
Path = Union[str, bytes]


class Error(PyXSError, RuntimeError):
    """A XenStore error, as ``xen.lowlevel.xs.Error``.

    ``args == (errno, os.strerror(errno))``, exactly as the binding's; like
    it, a :class:`RuntimeError`. It is also a
    :class:`~pyxs.exceptions.PyXSError`, so pyxs users catch it too.

    .. attribute:: detail

       pyxs's explanation (the call, the path, why an argument was
       refused), or None; ``str()`` includes it.
    """

    detail: Optional[str] = None

    def __init__(self, number: int, strerror: Optional[str] = None,
                 detail: Optional[str] = None) -> None:
        super().__init__(number, strerror if strerror is not None
                         else os.strerror(number))
        self.detail = detail

    def __str__(self) -> str:
        head = "[Errno %s] %s" % self.args[:2] if len(self.args) == 2 \
            else super().__str__()
        return "%s (%s)" % (head, self.detail) if self.detail else head


def _error(number: int, detail: Optional[str] = None) -> Error:
    return Error(number, os.strerror(number), detail)


def _oversized(payload: Any) -> bool:
    return isinstance(payload, (bytes, str)) and len(payload) > PAYLOAD_MAX


def _translate(exc: PyXSError) -> Error:
    """Turns any pyxs error into :class:`Error` with the errno the binding
    (through libxenstore) would have raised.

    Daemon errors keep their errno; an error name this system does not know
    becomes EINVAL, as libxenstore makes it. Arguments pyxs refuses before
    sending become EINVAL (E2BIG for an oversized payload), which the
    daemon or libxenstore would have answered; connection failures keep the
    OS errno when there is one, else EIO.
    """
    if isinstance(exc, Error):
        return exc
    number: Any = exc.errno
    detail = str(exc)
    if isinstance(number, int) and isinstance(exc.strerror, str):
        # The daemon's error: args say it already, the detail says where.
        result = _error(number, _context(exc.op, exc.path) or None)
    elif isinstance(number, str):
        result = _error(errno.EINVAL, detail)
    elif isinstance(exc, InvalidPayload) and _oversized(exc.args[0]):
        result = _error(errno.E2BIG, detail)
    elif isinstance(exc, ValueError):
        result = _error(errno.EINVAL, detail)
    else:
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) and cause.errno \
            else errno.EIO
        result = _error(code, detail)
    result.op, result.path = exc.op, exc.path
    return result


def _like(path: Path, data: bytes) -> Path:
    """``data`` in the type of ``path``: str (UTF-8) or bytes."""
    if isinstance(path, str):
        return data.decode("utf-8", "surrogateescape")
    return data


class xs:  # noqa: N801 -- the binding's class name
    """A XenStore connection, as ``xen.lowlevel.xs.xs``; opens on creation.

    :param readonly: accepted for compatibility and ignored, as by the
        binding: current daemons have no separate read-only socket.
    :param unix_socket_path: the daemon's socket; when neither path is
        given, the default socket is tried (``XENSTORED_PATH`` ...), then
        the XenBus device, as libxenstore's ``xs_open`` does.
    :param xen_bus_path: the XenBus device, used when given alone.
    :raises Error: if no connection can be opened.
    """

    def __init__(self, readonly: int = 0,
                 unix_socket_path: Optional[str] = None,
                 xen_bus_path: Optional[str] = None) -> None:
        self._lock = threading.Lock()
        self._closed = True
        self._transactions: Dict[int, Client] = {}
        self._client = self._open(unix_socket_path, xen_bus_path)
        self._events = EventSink(self._client)
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
            raise _error(errno.EINVAL, "the handle is closed")

    def _call(self, t: Handle, func: Callable[[Client], T]) -> T:
        """Runs ``func`` with the client of transaction ``t``."""
        tx_id = parse_handle(t)
        self._check_open()
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

    def _ack(self, op: int, *fields: bytes) -> None:
        """Sends a request of NUL-terminated fields; the reply must be OK."""
        def send() -> None:
            payload = b"".join(field + NUL for field in fields)
            if self._client.execute_command(op, payload) != b"OK":
                raise _error(errno.EIO, "%s reply is not OK" % op)
        self._do(send)

    # -- nodes ------------------------------------------------------------

    def read(self, t: Handle, path: Path) -> Optional[bytes]:
        """Returns the value at ``path`` as bytes, None if it does not
        exist."""
        check_type(t, path, "read")

        def read(client: Client) -> Optional[bytes]:
            try:
                return client.read(check_path(path))
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
        return self._call(t, read)

    def write(self, t: Handle, path: Path, data: Union[str, bytes]) -> None:
        """Writes ``data`` (str is UTF-8 encoded) at ``path``."""
        check_type(t, path, "write")
        value = check_value(data)
        self._call(t, lambda client: client.write(check_path(path), value))

    def mkdir(self, t: Handle, path: Path) -> None:
        """Creates ``path`` (and missing parents)."""
        check_type(t, path, "mkdir")
        self._call(t, lambda client: client.mkdir(check_path(path)))

    def rm(self, t: Handle, path: Path) -> None:
        """Removes ``path`` and its children; a missing path (or parent) is
        fine."""
        check_type(t, path, "rm")

        def rm(client: Client) -> None:
            try:
                client.delete(check_path(path))
            except PyXSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        self._call(t, rm)

    def ls(self, t: Handle, path: Path) -> Optional[List[Path]]:
        """Returns the names of the children of ``path`` (in the type of
        ``path``), None if it does not exist."""
        check_type(t, path, "ls")

        def ls(client: Client) -> Optional[List[Path]]:
            try:
                names = client.list(check_path(path))
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            return [_like(path, name) for name in names]
        return self._call(t, ls)

    def get_permissions(self, t: Handle, path: Path) -> List[Perm]:
        """Returns the permissions of ``path``, owner first, as dicts
        ``{'dom': int, 'read': 0 or 1, 'write': 0 or 2}`` (the bits)."""
        check_type(t, path, "get_permissions")
        perms = self._call(
            t, lambda client: client.get_perms(check_path(path)))
        return [perm_dict(perm) for perm in perms]

    def set_permissions(self, t: Handle, path: Path, perms: Any) -> None:
        """Sets the permissions of ``path``.

        :param perms: a list of dicts as :meth:`get_permissions` returns
            (``read``/``write`` true or false, default false), or pyxs 0.4's
            permission strings such as ``b"r5"``. A first entry that grants
            access to a domain other than 0 is, as in the binding,
            preceded by dom0 as owner without access.
        """
        check_type(t, path, "set_permissions")
        self._check_open()
        strings = perm_strings(perms)
        if strings is None:
            raise _error(errno.EINVAL, "perms must be a non-empty list")
        self._call(t, lambda client: client.set_perms(check_path(path),
                                                      strings))

    # -- watches ----------------------------------------------------------

    def watch(self, path: Path, token: Any) -> None:
        """Watches ``path``; :meth:`read_watch` gives ``token`` (any object,
        compared by identity) back with each event, with the event path in
        the type of ``path``. Special paths (``@...``) are the daemon's to
        judge."""
        check_type(None, path, "watch", first=1)
        self._check_open()
        wpath = check_path(path)
        wire = self._events.add(token, isinstance(path, bytes))
        try:
            self._ack(Op.WATCH, wpath, wire)
        except BaseException:
            self._events.discard(wire)
            raise

    def unwatch(self, path: Path, token: Any) -> None:
        """Stops the watch set by ``watch(path, token)``; its events still
        queued are dropped."""
        check_type(None, path, "unwatch", first=1)
        self._check_open()
        wpath = check_path(path)
        wire = self._events.wire(token, isinstance(path, bytes))
        self._ack(Op.UNWATCH, wpath, wire)
        self._events.discard(wire)

    def read_watch(self) -> Tuple[Path, Any]:
        """Waits for a watch event and returns ``(path, token)``."""
        self._check_open()
        event = self._do(lambda: self._events.get(block=True))
        assert event is not None  # a blocking get() returns an event
        return event

    def check_watch(self) -> Optional[Tuple[Path, Any]]:
        """Returns a pending watch event ``(path, token)``, or None at once
        if there is none."""
        self._check_open()
        return self._do(lambda: self._events.get(block=False))

    def fileno(self) -> int:
        """A descriptor readable while watch events are pending, for
        ``select`` (as ``xs_fileno``)."""
        self._check_open()
        return self._events.fileno()

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
        return "%x" % tx_id

    def transaction_end(self, transaction: Handle, abort: Any = 0) -> bool:
        """Commits (or with a true ``abort``, abandons) a transaction.

        :returns: False if the commit conflicted (EAGAIN) and must be
            redone, True otherwise.
        """
        t = transaction
        check_handle(t)
        tx_id = parse_handle(t)
        self._check_open()
        abort = bool(check_int(abort))
        with self._lock:
            client = self._transactions.pop(tx_id, None) if tx_id else None
        if client is None:
            # Unknown here: the daemon decides.
            return self._end_unknown(t, b"F" if abort else b"T")
        try:
            if abort:
                client.rollback()
                return True
            return client.commit()
        except PyXSError as exc:
            raise _translate(exc) from exc
        finally:
            client.close()

    def _end_unknown(self, t: Handle, command: bytes) -> bool:
        def end(client: Client) -> bool:
            try:
                client.execute_command(Op.TRANSACTION_END, command + NUL)
            except PyXSError as exc:
                if exc.errno == errno.EAGAIN:
                    return False
                raise
            return True
        return self._call(t, end)

    # -- domains ------------------------------------------------------------

    def introduce_domain(self, dom: int, page: int, port: int) -> None:
        """Tells the daemon to talk to domain ``dom``."""
        self._ack(Op.INTRODUCE, check_domid(dom, 1), check_domid(page, 2, 64),
                  check_domid(port, 3))

    def release_domain(self, dom: int) -> None:
        """Tells the daemon to forget domain ``dom``."""
        self._ack(Op.RELEASE, check_domid(dom, 1))

    def resume_domain(self, dom: int) -> None:
        """Clears the daemon's shutdown flag for domain ``dom``."""
        self._ack(Op.RESUME, check_domid(dom, 1))

    def set_target(self, dom: int, target: int) -> None:
        """Lets domain ``dom`` act on domain ``target``'s nodes."""
        self._ack(Op.SET_TARGET, check_domid(dom, 1), check_domid(target, 2))

    def get_domain_path(self, domid: int) -> Optional[str]:
        """Returns the home path of domain ``domid`` (str, as the binding
        does), None if the daemon has none."""
        number = check_domid(domid, 1)

        def get() -> Optional[str]:
            try:
                reply = self._client.execute_command(Op.GET_DOMAIN_PATH,
                                                     number + NUL)
            except PyXSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            return reply.decode("utf-8", "surrogateescape")
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
        # Closing the connection first drops the watches without a round
        # trip (safe from a finaliser, whatever thread runs it); a
        # read_watch() blocked in another thread then raises Error.
        self._client.router.terminate()
        self._events.close()
        for client in clients:
            client.close()
        self._client.close()
