"""The asyncio XenStore client: :class:`Client` and its transactions.

Each coroutine method mirrors the method of the same name of
:class:`pyxs.Client`: the same arguments, validation, return values and
errors (the requests are built by :mod:`pyxs._requests`). Any number of
coroutines may use one client at once; their requests are pipelined on its
one connection.

Invariants: a refused call sends nothing; a call that stops waiting
(timeout, cancellation) abandons its request, whose late reply is dropped,
and leaves the connection usable.
"""

import asyncio
import errno
import random
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .. import _requests as R
from .._batch import (
    Future,
    _cancel,
    batch_reads,
    batch_writes,
    check_all,
    read_values,
)
from .._features import Feature, remember_features
from .._internal import op_name
from ..connection import connection_for
from ..exceptions import PyXSError, TimeoutError
from ..helpers import error, force_bytes, validate_path, validate_timeout
from ..recipes import TransactionConflict
from ._router import AsyncRouter

if TYPE_CHECKING:  # pragma: no cover
    from ._monitor import Monitor

__all__ = ["Client", "Transaction"]

T = TypeVar("T")
Path = Union[bytes, str]
Value = Union[bytes, str]
Items = Union[Mapping[Path, Value], Iterable[Tuple[Path, Value]]]

#: Requests a batch (read_many, write_many, a walk's directory) sends in
#: one write.
WINDOW = 256


class Client:
    """Asyncio XenStore client; use as ``async with Client() as c:``.

    :param unix_socket_path: the daemon's socket; found as libxenstore
        finds it when neither path is given.
    :param xen_bus_path: the XenBus device, for guests.
    :param timeout: seconds to wait for each reply (and for the daemon to
        accept the connection) before raising
        :class:`pyxs.exceptions.TimeoutError`; None waits forever.
    """

    def __init__(self, unix_socket_path: Optional[str] = None,
                 xen_bus_path: Optional[str] = None,
                 timeout: Optional[float] = None, *,
                 router: Optional[AsyncRouter] = None) -> None:
        timeout = validate_timeout(timeout, "pyxs.aio.Client")
        self._owner = router is None
        if router is None:
            router = AsyncRouter(connection_for(unix_socket_path,
                                                xen_bus_path))
        self.router = router
        self.timeout = timeout
        #: The transaction this client's requests belong to (0: none).
        self.tx_id = 0

    def __repr__(self) -> str:
        return "pyxs.aio.Client(%r)" % (self.router.connection,)

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connects to XenStore; idempotent."""
        await self.router.start(self.timeout)

    async def close(self) -> None:
        """Closes the connection (if this client opened it): every request
        and monitor still waiting fails with ConnectionError."""
        if self._owner:
            self.router.close()

    # -- requests -------------------------------------------------------------

    async def _send(self, request: R.Request) -> bytes:
        """Sends one request, waits for its reply, returns its payload; an
        ERROR reply raises the daemon's error."""
        return await self._send_op(request.op, request.payload, request.path,
                                   request.bare)

    async def _send_op(self, op: int, data: bytes,
                       path: Optional[bytes] = None,
                       bare: bool = False) -> bytes:
        """:meth:`_send` without a Request object (the read path)."""
        router = self.router
        try:
            if bare:  # see pyxs._requests.unblocked
                (rq_id, future), unwanted = router.submit_many(
                    R.unblocked(op, self.tx_id))
                router.abandon(*unwanted)
                reply = await router.wait(rq_id, future, self.timeout)
            else:
                reply = await router.call(op, self.tx_id, data,
                                          self.timeout)
        except PyXSError as exc:
            if exc.op is None:
                exc.with_context(op_name(op), path)
            raise
        if reply.op == op:
            payload: bytes = reply.payload  # op, tx_id: checked
            return payload
        raise R.failure(R.Request(op, data, path), reply.op, reply.payload)

    async def _call(self, request: R.Request) -> Any:
        """Sends a built request; returns the value its reply stands for."""
        return request.result(await self._send(request))

    async def _run(self, steps: Generator[R.Request, bytes, T]) -> T:
        """Drives a call of several round trips (see
        :func:`pyxs._requests.listing`) to its value."""
        done, item = R.step(steps)
        while not done:
            try:
                reply: Any = await self._send(item)
            except PyXSError as exc:
                reply = exc
            done, item = R.step(steps, reply)
        result: T = item
        return result

    async def _exchange(self, requests: List[R.Request]) -> List[Any]:
        """Sends requests together (one write per WINDOW) and waits for
        every reply: for each, a reply packet or the error its wait ended
        with. Once one reply is late (the timeout), the others still
        missing are abandoned at once; cancelled, it abandons what is
        still in flight."""
        router = self.router
        results: List[Any] = []
        tx_id = self.tx_id
        stalled = False
        for start in range(0, len(requests), WINDOW):
            window = requests[start:start + WINDOW]
            try:
                sent = router.submit_many([(r.op, tx_id, r.payload)
                                           for r in window])
            except PyXSError as exc:  # the connection is unusable
                results.extend(exc for _ in requests[start:])
                break
            try:
                for rq_id, future in sent:
                    if stalled and not future.done():
                        router.abandon(rq_id, future)
                        results.append(TimeoutError(
                            "no reply within %g s" % (self.timeout or 0)))
                        continue
                    try:
                        results.append(await router.wait(rq_id, future,
                                                         self.timeout))
                    except PyXSError as exc:
                        stalled = stalled or isinstance(exc, TimeoutError)
                        results.append(exc)
            except BaseException:
                for rq_id, future in sent:
                    router.abandon(rq_id, future)  # a no-op for the done
                raise
            if stalled:
                results.extend(PyXSError(
                    errno.ECANCELED, "not sent: an earlier request of the "
                    "batch timed out") for _ in requests[len(results):])
                break
        return results

    async def execute_command(self, op: int, *args: Union[bytes, str],
                              **kwargs: Any) -> bytes:
        """Sends a raw request (see :meth:`pyxs.Client.execute_command`)."""
        request = R.raw(op, *args,
                        nul_terminated=bool(kwargs.get("nul_terminated")))
        result: bytes = await self._call(request)
        return result

    # -- nodes ----------------------------------------------------------------

    async def read(self, path: Path, default: Optional[bytes] = None
                   ) -> bytes:
        """The value at ``path``; ``default`` instead of ENOENT if given."""
        checked = validate_path(path, "read")
        try:  # as R.read(path), without building a Request
            return await self._send_op(R.READ, checked + b"\x00", checked)
        except PyXSError as exc:
            if default is not None and exc.args[0] == errno.ENOENT:
                return default
            raise

    async def write(self, path: Path, value: Value) -> None:
        """Writes ``value`` at ``path``, creating missing parents."""
        await self._call(R.write(path, value, self.router.payload_max))

    async def mkdir(self, path: Path) -> None:
        """Creates ``path`` and missing parents."""
        await self._call(R.mkdir(path))

    async def delete(self, path: Path) -> None:
        """Removes ``path`` and everything below it."""
        await self._call(R.delete(path))

    async def list(self, path: Path) -> List[bytes]:
        """The names of the children of ``path``; listings too long for
        one reply are fetched consistently in parts (DIRECTORY_PART)."""
        result: List[bytes] = await self._run(R.listing(path))
        return result

    async def exists(self, path: Path) -> bool:
        """True if ``path`` exists."""
        try:
            await self._run(R.listing(path, "exists"))
        except PyXSError as exc:
            if exc.args[0] == errno.ENOENT:
                return False
            raise
        return True

    async def get_perms(self, path: Path) -> List[bytes]:
        """The permissions of ``path``, e.g. ``[b"n0", b"r5"]``."""
        result: List[bytes] = await self._call(R.get_perms(path))
        return result

    async def set_perms(self, path: Path, perms: Iterable[Path]) -> None:
        """Sets the permissions of ``path``; the first entry is the owner."""
        await self._call(R.set_perms(path, perms))

    def walk(self, top: Path, topdown: bool = True
             ) -> AsyncIterator[Tuple[bytes, bytes, List[bytes]]]:
        """``async for path, value, children in c.walk(top)``: the tree at
        ``top`` in :func:`os.walk` order, as :meth:`pyxs.Client.walk`
        (pruning by removing names from ``children`` with ``topdown``);
        the nodes of each directory are requested together."""
        from ._walk import walk
        return walk(self, validate_path(top), topdown)

    # -- batches --------------------------------------------------------------

    async def read_many(self, paths: Iterable[Path],
                        default: Optional[bytes] = None) -> List[bytes]:
        """As :meth:`pyxs.Client.read_many`: one round trip, every path
        validated first, every reply collected before the first error."""
        if default is not None:
            default = force_bytes(default, "default")
        requests = batch_reads(paths)
        return read_values(requests, await self._exchange(requests), default)

    async def write_many(self, items: Items) -> None:
        """As :meth:`pyxs.Client.write_many`."""
        requests = batch_writes(items, self.router.payload_max)
        check_all(requests, await self._exchange(requests))

    # -- domains --------------------------------------------------------------

    async def get_domain_path(self, domid: int) -> bytes:
        """The home path of a domain, ``/local/domain/<domid>``."""
        result: bytes = await self._call(R.get_domain_path(domid))
        return result

    async def is_domain_introduced(self, domid: int) -> bool:
        """True if xenstored talks to ``domid``."""
        return bool(await self._call(R.is_domain_introduced(domid)))

    async def introduce_domain(self, domid: int, mfn: int,
                               eventchn: int) -> None:
        """Tells xenstored to talk to a new domain (needs privilege)."""
        await self._call(R.introduce_domain(domid, mfn, eventchn))

    async def release_domain(self, domid: int) -> None:
        """Tells xenstored to forget a domain (needs privilege)."""
        await self._call(R.release_domain(domid))

    async def resume_domain(self, domid: int) -> None:
        """Clears a domain's shutdown flag in xenstored."""
        await self._call(R.resume_domain(domid))

    async def set_target(self, domid: int, target: int) -> None:
        """Lets ``domid`` act on ``target``'s nodes."""
        await self._call(R.set_target(domid, target))

    async def control(self, *args: Union[bytes, str]) -> bytes:
        """Sends a CONTROL (formerly DEBUG) command; returns the reply
        without its trailing NUL."""
        result: bytes = await self._call(R.control(*args))
        return result

    async def reset_watches(self) -> None:
        """Drops every watch and transaction of this connection."""
        await self._call(R.reset_watches())
        self.tx_id = 0

    # -- features and quotas (Xen 4.21 and later) -----------------------------

    async def get_features(self, domid: Optional[int] = None) -> Feature:
        """As :meth:`pyxs.Client.get_features`."""
        value: int = await self._call(R.get_features(domid))
        if domid is None:
            remember_features(self.router, value)
        return Feature(value)

    async def set_features(self, domid: int, features: int) -> None:
        """As :meth:`pyxs.Client.set_features`."""
        await self._call(R.set_features(domid, features))

    async def quota_names(self) -> List[str]:
        """As :meth:`pyxs.Client.quota_names`."""
        result: List[str] = await self._call(R.quota_names())
        return result

    async def get_quota(self, name: Union[bytes, str],
                        domid: Optional[int] = None) -> int:
        """As :meth:`pyxs.Client.get_quota`."""
        result: int = await self._call(R.get_quota(name, domid))
        return result

    async def set_quota(self, name: Union[bytes, str], value: int,
                        domid: Optional[int] = None) -> None:
        """As :meth:`pyxs.Client.set_quota`."""
        await self._call(R.set_quota(name, value, domid))

    # -- transactions and watches ---------------------------------------------

    def transaction(self) -> "Transaction":
        """``async with c.transaction() as t:``; see :class:`Transaction`."""
        return Transaction(self)

    async def run_transaction(self, func: Callable[["Client"], Awaitable[T]],
                              attempts: int = 10, backoff: float = 0.005,
                              max_backoff: float = 0.5) -> T:
        """Runs ``await func(t)`` in a transaction until it commits, as
        :func:`pyxs.run_transaction` does: a conflict (EAGAIN) runs it
        again after a randomised, doubling pause; an exception from
        ``func`` rolls back and propagates.

        :raises pyxs.TransactionConflict: after ``attempts`` conflicts.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        pause = backoff
        for attempt in range(attempts):
            transaction = Transaction(self)
            tx = await transaction.__aenter__()
            try:
                result = await func(tx)
            except BaseException:
                await transaction.rollback()
                raise
            if await transaction.commit():
                return result
            if attempt + 1 < attempts:
                await asyncio.sleep(random.uniform(0, pause))  # backoff
                pause = min(pause * 2, max_backoff)
        raise TransactionConflict(
            "transaction still conflicted after %d attempts" % attempts)

    def pipeline(self) -> "Pipeline":
        """``async with c.pipeline() as p:``; see :class:`Pipeline`."""
        return Pipeline(self)

    def monitor(self) -> "Monitor":
        """A :class:`~pyxs.aio.Monitor` on this client's connection."""
        from ._monitor import Monitor
        return Monitor(self)


class Transaction:
    """A transaction: ``async with c.transaction() as t:``.

    ``t`` is a :class:`Client` on the same connection whose every request
    joins the transaction. Leaving the block normally commits; a conflict
    (another writer changed what the transaction touched) raises
    :class:`pyxs.TransactionConflict`, and the work must be redone
    (:meth:`Client.run_transaction` does that). Leaving on an exception
    rolls back.
    """

    def __init__(self, client: Client) -> None:
        self.client = Client(router=client.router, timeout=client.timeout)

    async def __aenter__(self) -> Client:
        tx = self.client
        if tx.tx_id:
            raise error(errno.EALREADY).with_context("TRANSACTION_START")
        tx.tx_id = await tx._call(R.transaction_start())
        return tx

    async def __aexit__(self, exc_type: Any, *exc_info: Any) -> None:
        if not self.client.tx_id:
            return  # ended inside the block
        if exc_type is not None:
            try:
                await self._end(False)
            except PyXSError:
                pass  # the block's own exception matters
        elif not await self.commit():
            raise TransactionConflict(
                "the transaction conflicted with a concurrent change and "
                "was not committed; redo it (run_transaction() retries)")

    async def _end(self, commit: bool) -> bool:
        tx = self.client
        if not tx.tx_id:
            raise PyXSError(errno.EINVAL, "no transaction in progress") \
                .with_context("TRANSACTION_END")
        try:
            await tx._call(R.transaction_end(commit))
        except PyXSError as exc:
            if commit and exc.args[0] == errno.EAGAIN:
                return False
            raise
        finally:
            tx.tx_id = 0
        return True

    async def commit(self) -> bool:
        """Commits; False when a conflicting change made it fail."""
        return await self._end(True)

    async def rollback(self) -> None:
        """Abandons the transaction; a dead connection already did."""
        try:
            await self._end(False)
        except PyXSError:
            if self.client.router.is_connected:
                raise



class Pipeline:
    """Requests queued, then sent together, as with
    :meth:`pyxs.Client.pipeline`: ``p.read()``, ``p.write()``,
    ``p.mkdir()`` and ``p.delete()`` validate at once and return a
    :class:`~pyxs._batch.Future`. Leaving the ``async with`` block (or
    ``await p.send()``) sends what is queued and waits for every reply;
    leaving it normally then raises the first error. The futures' results
    are there once their requests were sent.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._queued: List[Future] = []
        self._sent: List[Future] = []

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is not None:
            queued, self._queued = self._queued, []
            _cancel(queued, errno.ECANCELED,
                    "not sent: the pipeline's block raised")
            return
        await self.send()
        for future in self._sent:
            if future._error is not None:
                raise future._error

    def __len__(self) -> int:
        return len(self._queued)

    async def send(self) -> None:
        """Sends the queued requests and waits for their replies."""
        queued, self._queued = self._queued, []
        self._sent.extend(queued)
        try:
            results = await self.client._exchange(
                [f.request for f in queued])
        except BaseException:
            _cancel(queued, errno.EINTR, "interrupted before its reply came")
            raise
        for future, result in zip(queued, results):
            future._settle(result)

    def _add(self, request: R.Request,
             default: Optional[bytes] = None) -> Future:
        future = Future(request, default)
        self._queued.append(future)
        return future

    def read(self, path: Path, default: Optional[bytes] = None) -> Future:
        """Queues :meth:`Client.read`."""
        if default is not None:
            default = force_bytes(default, "default")
        return self._add(R.read(path), default)

    def write(self, path: Path, value: Value) -> Future:
        """Queues :meth:`Client.write`."""
        return self._add(R.write(path, value, self.client.router.payload_max))

    def mkdir(self, path: Path) -> Future:
        """Queues :meth:`Client.mkdir`."""
        return self._add(R.mkdir(path))

    def delete(self, path: Path) -> Future:
        """Queues :meth:`Client.delete`."""
        return self._add(R.delete(path))
