"""The XenStore client API: :class:`Client`.

A client turns method calls into requests, sends them through its
:class:`~pyxs.router.Router` and turns the replies into Python values. Several
clients (and their monitors) may share one router, hence one connection.
"""

import errno
import threading
import warnings
from typing import (
    Any,
    Callable,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from . import _batch
from . import _replies as replies
from . import _requests as requests
from ._features import Feature, remember_features
from ._internal import NUL, Op, Packet, op_name
from ._walk import TreeWalk
from .connection import (  # the classes: pyxs 0.4 had them here
    UnixSocketConnection,
    XenBusConnection,
    connection_for,
)
from .exceptions import PyXSError, UnexpectedPacket
from .helpers import error, validate_path, validate_timeout
from .monitor import Monitor
from .recipes import run_transaction
from .router import Router, RVar

__all__ = ["Client", "Monitor"]

# pyxs 0.4 had these here too: importable, documented in pyxs.router and
# pyxs.connection.
_04_NAMES = (Router, RVar, UnixSocketConnection, XenBusConnection)

T = TypeVar("T")
Path = Union[bytes, str]
Value = Union[bytes, str]

_ERROR = int(Op.ERROR)  # compared on every reply: a plain int is faster


def _is_control_domain() -> bool:
    try:
        with open("/proc/xen/capabilities", "rb") as handle:
            return handle.read().strip() == b"control_d"
    except OSError:
        return False


def _deprecated(old: str, new: str) -> None:
    warnings.warn("Client.%s() is deprecated, use Client.%s()" % (old, new),
                  DeprecationWarning, stacklevel=3)


def _deprecated_keyword(old: str, new: str) -> None:
    warnings.warn("Client(%s=...) is pyxs 0.3's; use %s" % (old, new),
                  DeprecationWarning, stacklevel=3)


class Client:
    """XenStore client.

    :param unix_socket_path: the daemon's Unix socket; found as libxenstore
        finds it (``XENSTORED_PATH``, ...) when no argument is given.
    :param xen_bus_path: the XenBus device, for guests (and dom0 kernels
        without a socket). Used when given without ``unix_socket_path``.
    :param router: an existing :class:`Router` to share with other clients.
    :param timeout: seconds to wait for each reply (and for the daemon
        to accept the connection) before raising
        :class:`pyxs.exceptions.TimeoutError`; ``None`` waits forever.
        A finite number from 0 to :data:`pyxs.helpers.TIMEOUT_MAX`, else
        TypeError or ValueError at once.

    Use the client as a context manager, or call :meth:`connect` and
    :meth:`close`. Methods accept paths and values as ``bytes`` or ``str``
    and return ``bytes``.
    """

    #: True when running in a Xen control domain (pyxs 0.4 API; pyxs no
    #: longer uses it to refuse operations: the daemon decides).
    SU = _is_control_domain()

    def __init__(self, unix_socket_path: Optional[str] = None,
                 xen_bus_path: Optional[str] = None,
                 router: Optional[Router] = None,
                 timeout: Optional[float] = None, *,
                 socket_timeout: Optional[float] = None,
                 connection: Any = None,
                 transaction: Optional[bool] = None) -> None:
        # pyxs 0.3's keywords, each deprecated for its 0.4 spelling.
        if socket_timeout is not None:
            _deprecated_keyword("socket_timeout", "Client(timeout=...)")
            if timeout is not None and timeout != socket_timeout:
                raise TypeError("give timeout or socket_timeout, not both")
            timeout = socket_timeout
        if connection is not None:
            _deprecated_keyword("connection",
                                "Client(router=Router(connection))")
            if router is not None:
                raise TypeError("give router or connection, not both")
            router = Router(connection)
        if transaction is not None:
            _deprecated_keyword("transaction",
                                "client.transaction() once connected")
        self._begin_transaction = bool(transaction)
        timeout = validate_timeout(timeout, "Client")
        if router is None:
            router = Router(connection_for(unix_socket_path, xen_bus_path))
        self.router = router
        self.tx_id = 0
        self.timeout = timeout
        self._connected = False

    def __repr__(self) -> str:
        return "Client(%r)" % (self.router.connection,)

    def __copy__(self) -> "Client":
        return type(self)(router=self.router, timeout=self.timeout)

    def __enter__(self) -> "Client":
        self.connect()
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        uncommitted = self.tx_id and exc_type is None
        self.close()
        if uncommitted:
            raise PyXSError("uncommitted transaction: call commit() or "
                            "rollback() before leaving the 'with' block")

    @property
    def router_thread(self) -> threading.Thread:
        """The router's thread (pyxs 0.4 API)."""
        return self.router.thread

    # -- connection ---------------------------------------------------------

    def connect(self) -> None:
        """Connects to XenStore; idempotent.

        :raises pyxs.exceptions.ConnectionError: if the daemon cannot be
            reached; the message names the path tried and the reason.
        """
        if not self._connected:
            self.router.acquire(self.timeout)
            self._connected = True
            if self._begin_transaction:  # Client(transaction=True), 0.3
                self._begin_transaction = False
                self.transaction()

    def close(self) -> None:
        """Finalises the client; idempotent.

        The shared router (and its connection) closes with its last client.
        A transaction still open is abandoned (the daemon discards it).
        """
        if self._connected:
            self._connected = False
            self.tx_id = 0
            self.router.release()

    def __del__(self) -> None:
        # Like an unclosed file: warn, and let the router go (its thread
        # then closes the connection), without waiting for any lock.
        if getattr(self, "_connected", False):
            self._connected = False
            warnings.warn("unclosed %r" % (self,), ResourceWarning,
                          stacklevel=2, source=self)
            release = getattr(self.router, "release", None)
            if release is not None and type(self.router) is Router:
                release(blocking=False)

    # -- requests -----------------------------------------------------------

    def _send(self, op: int, payload: bytes, path: Any = None) -> bytes:
        """Sends one request, waits for its reply and returns its payload;
        an ERROR reply raises the daemon's error."""
        router = self.router
        try:
            if type(router) is Router:  # the fast path: no Packet object
                reply = router.call(op, self.tx_id, payload, self.timeout)
            else:  # any object with send() works too, e.g. a test double
                reply = self._call_foreign(op, payload)
        except PyXSError as exc:
            if exc.op is None:
                exc.with_context(op_name(op), path)
            raise
        if reply.op == _ERROR:
            raise replies.error_reply(reply.payload, op, path)
        return reply.payload

    def _call_foreign(self, op: int, payload: bytes) -> Packet:
        """One request through a router that only offers pyxs 0.4's
        ``send(packet) -> RVar``; its reply checked as the router's own
        pending table checks replies."""
        router = self.router
        rvar = router.send(Packet(op, payload, 0, self.tx_id))
        try:
            reply: Packet = rvar.get(self.timeout)
        except BaseException:
            # Interrupted or timed out: drop the late reply.
            abandon = getattr(router, "abandon", None)
            if abandon is not None and not rvar.done():
                abandon(rvar)
            raise
        refusal = replies.check_reply(op, self.tx_id, reply)
        if refusal is not None:
            raise refusal
        return reply

    def _call(self, request: requests.Request) -> Any:
        """Sends a built request; returns the value its reply stands for."""
        if request.bare:
            payload = self._bare(request)
        else:
            payload = self._send(request.op, request.payload, request.path)
        return request.result(payload)

    def _run(self, steps: Generator[requests.Request, bytes, T]) -> T:
        """Drives a call of several round trips (see
        :func:`pyxs._requests.listing`) to its value."""
        done, item = requests.step(steps)
        while not done:
            try:
                reply: Any = self._send(item.op, item.payload, item.path)
            except PyXSError as exc:
                reply = exc
            done, item = requests.step(steps, reply)
        result: T = item
        return result

    def execute_command(self, op: int, *args: Union[bytes, str],
                        **kwargs: Any) -> bytes:
        """Sends a raw request: ``args`` are concatenated as they are.

        Returns the reply payload without its trailing NULs; raises
        :class:`~pyxs.exceptions.PyXSError` for an error reply. This is the
        escape hatch for operations without a dedicated method.

        :raises pyxs.exceptions.InvalidOperation: for an ``op`` not in
            :data:`~pyxs._internal.Op`, before anything is sent.
        """
        result: bytes = self._call(requests.raw(op, *args, **kwargs))
        return result

    def ack(self, *args: Any) -> None:
        """Like :meth:`execute_command`, but the reply must be ``OK``."""
        payload = self.execute_command(*args)
        if payload != b"OK":
            raise UnexpectedPacket("expected OK, got %r" % payload[:40])

    # -- nodes --------------------------------------------------------------

    def read(self, path: Path, default: Optional[bytes] = None) -> bytes:
        """Returns the value at ``path``.

        :param default: returned instead of raising when ``path`` does not
            exist.
        """
        path = validate_path(path, "read")
        try:
            return self._send(Op.READ, path + NUL, path)
        except PyXSError as exc:
            if default is not None and exc.args[0] == errno.ENOENT:
                return default
            raise

    def __getitem__(self, path: Path) -> bytes:
        return self.read(path)

    def write(self, path: Path, value: Union[bytes, str]) -> None:
        """Writes ``value`` at ``path``, creating missing parents."""
        request = requests.write(path, value)  # sent without _call's layer
        replies.ok(self._send(request.op, request.payload, request.path),
                   request.op, request.path)

    def __setitem__(self, path: Path, value: Union[bytes, str]) -> None:
        self.write(path, value)

    def mkdir(self, path: Path) -> None:
        """Creates ``path`` and missing parents; existing values are kept."""
        self._call(requests.mkdir(path))

    def delete(self, path: Path) -> None:
        """Removes ``path`` and everything below it.

        A missing ``path`` is fine; a missing parent is an error (ENOENT).
        """
        self._call(requests.delete(path))

    def __delitem__(self, path: Path) -> None:
        self.delete(path)

    def list(self, path: Path) -> List[bytes]:
        """Returns the names of the children of ``path``.

        Listings too long for one reply are fetched in parts
        (DIRECTORY_PART), consistently: the parts come from one version of
        the node.
        """
        return self._run(requests.listing(path))

    def exists(self, path: Path) -> bool:
        """True if ``path`` exists."""
        try:
            self._run(requests.listing(path, "exists"))
        except PyXSError as exc:
            if exc.args[0] == errno.ENOENT:
                return False
            raise
        return True

    def get_perms(self, path: Path) -> List[bytes]:
        """Returns the permissions of ``path``, e.g. ``[b"n0", b"r5"]``."""
        result: List[bytes] = self._call(requests.get_perms(path))
        return result

    def set_perms(self, path: Path, perms: Iterable[Path]) -> None:
        """Sets the permissions of ``path``; the first entry is the owner.

        See :exc:`~pyxs.exceptions.InvalidPermission` for the format.
        """
        self._call(requests.set_perms(path, perms))

    def walk(self, top: Path, topdown: bool = True
             ) -> Iterator[Tuple[bytes, bytes, List[bytes]]]:
        """Walks the tree at ``top``, yielding ``(path, value, children)``.

        Ordering follows :func:`os.walk`: with ``topdown`` a node comes
        before its children, and removing names from ``children`` prunes
        the walk. Reads and listings of many nodes are in flight at once.
        Nodes that vanish during the walk are skipped; an unreadable value
        is reported as ``b""``.
        """
        top = validate_path(top, "walk")
        walk = TreeWalk(self.router, self.tx_id, self.timeout, self.list,
                        topdown)
        node = walk.node(top, walk.request([top])[0])
        if node is None:  # unlike a vanished child, a missing top is an error
            raise error(errno.ENOENT).with_context("DIRECTORY", top)
        return walk.run(top, node)

    # -- batches (pyxs/_batch.py) -------------------------------------------

    def read_many(self, paths: Iterable[Path],
                  default: Optional[bytes] = None) -> List[bytes]:
        """Reads many paths in one round trip; values in ``paths`` order.

        Every path is validated before anything is sent; every reply is
        collected before the first error (naming its path) is raised.
        :param default: returned for a missing path instead of raising.
        """
        return _batch.read_many(self, paths, default)

    def write_many(self, items: Union[Mapping[Path, Value],
                                      Iterable[Tuple[Path, Value]]]) -> None:
        """Writes a mapping or ``(path, value)`` pairs in one round trip,
        in order; validated and checked as :meth:`read_many` is."""
        _batch.write_many(self, items)

    def pipeline(self) -> "_batch.Pipeline":
        """A :class:`~pyxs._batch.Pipeline`: requests queued, then sent
        together; its methods return futures."""
        return _batch.Pipeline(self)

    # -- domains ------------------------------------------------------------

    def get_domain_path(self, domid: int) -> bytes:
        """Returns the home path of a domain, ``/local/domain/<domid>``."""
        result: bytes = self._call(requests.get_domain_path(domid))
        return result

    def is_domain_introduced(self, domid: int) -> bool:
        """True if xenstored talks to ``domid`` (introduced, not released)."""
        return bool(self._call(requests.is_domain_introduced(domid)))

    def introduce_domain(self, domid: int, mfn: int, eventchn: int) -> None:
        """Tells xenstored to talk to a new domain (needs privilege)."""
        self._call(requests.introduce_domain(domid, mfn, eventchn))

    def release_domain(self, domid: int) -> None:
        """Tells xenstored to forget a domain (needs privilege)."""
        self._call(requests.release_domain(domid))

    def resume_domain(self, domid: int) -> None:
        """Clears a domain's shutdown flag in xenstored."""
        self._call(requests.resume_domain(domid))

    def set_target(self, domid: int, target: int) -> None:
        """Lets ``domid`` act on ``target``'s nodes (e.g. a stub domain)."""
        self._call(requests.set_target(domid, target))

    # -- transactions -------------------------------------------------------

    def transaction(self) -> int:
        """Starts a transaction; every call of this client then joins it.

        :returns: the transaction id.
        :raises pyxs.exceptions.PyXSError: with ``errno.EALREADY`` if this
            client is already in a transaction.
        """
        if self.tx_id:
            raise error(errno.EALREADY).with_context("TRANSACTION_START")
        self.tx_id = self._call(requests.transaction_start())
        return self.tx_id

    def _end(self, commit: bool) -> bool:
        if not self.tx_id:
            raise PyXSError(errno.EINVAL, "no transaction in progress") \
                .with_context("TRANSACTION_END")
        try:
            self._call(requests.transaction_end(commit))
        except PyXSError as exc:
            if commit and exc.args[0] == errno.EAGAIN:
                return False
            raise
        finally:
            self.tx_id = 0
        return True

    def commit(self) -> bool:
        """Commits the transaction.

        :returns: False if a conflicting change made the commit fail; the
            transaction is over either way and must be redone in full
            (:meth:`run_transaction` does that for you).
        """
        return self._end(True)

    def rollback(self) -> None:
        """Abandons the transaction."""
        self._end(False)

    def run_transaction(self, func: Callable[["Client"], T],
                        **kwargs: Any) -> T:
        """Runs ``func(tx_client)`` in a transaction, retried on conflict.

        See :func:`pyxs.recipes.run_transaction` for the arguments.
        """
        return run_transaction(self, func, **kwargs)

    # -- watches and control ------------------------------------------------

    def monitor(self) -> Monitor:
        """Returns a :class:`~pyxs.monitor.Monitor` sharing this client's
        connection."""
        return Monitor(self)

    def control(self, *args: Union[bytes, str]) -> bytes:
        """Sends a CONTROL (formerly DEBUG) command, e.g. ``control("help")``;
        returns the reply without its trailing NUL."""
        result: bytes = self._call(requests.control(*args))
        return result

    def reset_watches(self) -> None:
        """Drops every watch and transaction of this connection."""
        self._call(requests.reset_watches())
        self.tx_id = 0

    # -- features and quotas (Xen 4.21 and later) ---------------------------

    def _bare(self, request: requests.Request) -> bytes:
        """Sends a request with an empty payload so that every daemon
        answers it (see :func:`pyxs._requests.unblocked`); the second
        request's reply is not waited for."""
        router = self.router
        op = request.op
        if type(router) is not Router:  # a test double: no unblocking
            return self._send(op, b"")
        first, _ = router.submit_many(requests.unblocked(op, self.tx_id))
        try:
            reply = first.get(self.timeout)  # op and tx_id: checked
        except BaseException:
            if not first.done():
                router.abandon(first)
            raise
        if reply.op != op:
            raise requests.failure(request, reply.op, reply.payload)
        return bytes(reply.payload)

    def get_features(self, domid: Optional[int] = None) -> Feature:
        """The :class:`~pyxs.Feature` bits the daemon offers this
        connection, or with ``domid`` the ones set for that domain (dom0
        only). Needs Xen 4.21's GET_FEATURE.

        :raises pyxs.exceptions.UnsupportedOperation: for an older daemon.
        """
        value: int = self._call(requests.get_features(domid))
        if domid is None:
            remember_features(self.router, value)
        return Feature(value)

    def set_features(self, domid: int, features: int) -> None:
        """Sets the features of a domain not yet introduced (dom0 only;
        EBUSY after INTRODUCE, EINVAL for a bit the daemon lacks)."""
        self._call(requests.set_features(domid, features))

    def quota_names(self) -> List[str]:
        """The names of the daemon's quotas, e.g. ``["nodes", ...]``
        (dom0 only; Xen 4.21's GET_QUOTA)."""
        result: List[str] = self._call(requests.quota_names())
        return result

    def get_quota(self, name: Union[bytes, str],
                  domid: Optional[int] = None) -> int:
        """A quota of one domain, or without ``domid`` its global default
        for new domains; 0 means the check is disabled (dom0 only)."""
        result: int = self._call(requests.get_quota(name, domid))
        return result

    def set_quota(self, name: Union[bytes, str], value: int,
                  domid: Optional[int] = None) -> None:
        """Sets a quota of one domain, or without ``domid`` the global
        default for domains created later; 0 disables the check."""
        self._call(requests.set_quota(name, value, domid))

    # -- pyxs 0.3 names -----------------------------------------------------

    def ls(self, path: Path) -> List[bytes]:
        """Deprecated alias of :meth:`list`."""
        _deprecated("ls", "list")
        return self.list(path)

    def rm(self, path: Path) -> None:
        """Deprecated alias of :meth:`delete`."""
        _deprecated("rm", "delete")
        self.delete(path)

    def get_permissions(self, path: Path) -> List[bytes]:
        """Deprecated alias of :meth:`get_perms`."""
        _deprecated("get_permissions", "get_perms")
        return self.get_perms(path)

    def set_permissions(self, path: Path, perms: Iterable[Path]) -> None:
        """Deprecated alias of :meth:`set_perms`."""
        _deprecated("set_permissions", "set_perms")
        self.set_perms(path, perms)

    def transaction_start(self) -> int:
        """Deprecated alias of :meth:`transaction`."""
        _deprecated("transaction_start", "transaction")
        return self.transaction()

    def transaction_end(self, commit: bool = True) -> bool:
        """Deprecated: :meth:`commit` or :meth:`rollback`."""
        _deprecated("transaction_end", "commit() or Client.rollback")
        return self._end(commit)
