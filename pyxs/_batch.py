"""Batches: many requests in flight at once on the threaded client.

:meth:`Client.read_many() <pyxs.client.Client.read_many>`,
:meth:`write_many() <pyxs.client.Client.write_many>` and
:meth:`pipeline() <pyxs.client.Client.pipeline>` send their requests
together, through
``router.submit_many`` (one write per window of :data:`WINDOW` requests),
and then wait for the replies, so a batch costs about one round trip
instead of one per request. XenStore handles the requests of a connection
in the order they were sent, so a batch's effects happen in its order.

Invariants:

- Every request of a batch is validated before any is sent: a refused
  batch sends nothing, and the error names the call, the item and the path.
- Once sent, every reply is collected (or its request abandoned, when the
  wait times out or is interrupted) before anything is raised: a failed
  batch leaves nothing in flight, and the connection stays usable.
- The first failure in the batch's order is raised, with its operation and
  path, as the single-request call would raise it.

The reply check (op and transaction id) is the router's; this module only
tells a success from an ERROR reply.
"""

import errno
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._internal import PAYLOAD_MAX, Op, Packet, op_name
from ._replies import ok
from ._requests import Request, failure
from ._requests import delete as build_delete
from ._requests import mkdir as build_mkdir
from ._requests import read as build_read
from ._requests import write as build_write
from .exceptions import PyXSError, TimeoutError, _InvalidValue
from .helpers import force_bytes

_READ = int(Op.READ)

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["WINDOW", "Future", "Pipeline", "read_many", "write_many"]

#: Requests sent in one write; a longer batch goes out in windows, each
#: once the previous one's replies are in (as the walk bounds its own).
WINDOW = 256

Path = Union[bytes, str]
Value = Union[bytes, str]


class Future:
    """The outcome of one request of a batch.

    :meth:`result` returns the value, or raises the request's error; asked
    before the request was sent, it sends its pipeline first.
    """

    __slots__ = ("request", "op", "path", "default", "_done", "_value",
                 "_error", "_pipeline")

    def __init__(self, request: Request, default: Any = None,
                 pipeline: "Optional[Pipeline]" = None) -> None:
        #: The request (:class:`pyxs._requests.Request`), reply parser
        #: included.
        self.request = request
        self.op = request.op
        self.path = request.path
        #: Returned instead of an ENOENT error (READ), unless None.
        self.default = default
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._pipeline = pipeline

    def __repr__(self) -> str:
        state = "pending" if not self._done else \
            "failed" if self._error is not None else "done"
        return "<Future %s %r %s>" % (op_name(self.op), self.path, state)

    def done(self) -> bool:
        """True once the reply (or the failure) is in."""
        return self._done

    def result(self) -> Any:
        """The request's value; raises its error."""
        if not self._done and self._pipeline is not None:
            self._pipeline.send()
        if not self._done:
            raise PyXSError(errno.EINVAL, "this request was never sent") \
                .with_context(op_name(self.op), self.path)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> Optional[BaseException]:
        """The request's error, or None; sends its pipeline if need be."""
        try:
            self.result()
        except PyXSError as exc:
            return exc
        return None

    def _settle(self, reply: Any) -> None:
        """Completes the future from a reply packet or a failure."""
        self._done = True
        value = outcome(self.request, reply)
        if not isinstance(value, PyXSError):
            self._value = value
        elif self.default is not None and value.args[0] == errno.ENOENT:
            self._value = self.default
        else:
            self._error = value


def _limit(client: "Client") -> int:
    connection = getattr(client.router, "connection", None)
    return min(PAYLOAD_MAX, getattr(connection, "payload_max", PAYLOAD_MAX))


def _submit(client: "Client", requests: Sequence[Request]) -> List[Any]:
    """Sends validated requests in one write; returns their RVars."""
    router = client.router
    tx_id = client.tx_id
    submit_many = getattr(router, "submit_many", None)
    if submit_many is not None:
        return list(submit_many([(r.op, tx_id, r.payload)
                                 for r in requests]))
    # A test double of the router: one request at a time.
    return [router.send(Packet(r.op, r.payload, 0, tx_id))
            for r in requests]


def exchange(client: "Client", requests: Sequence[Request]) -> List[Any]:
    """Sends validated requests and waits for every reply.

    Returns, for each request, its reply packet or the error its wait
    ended with: the connection's failure, a timeout, or an ECANCELED
    error for requests not sent because an earlier window timed out.
    Raises only on an interrupt (Ctrl-C), once the requests in flight are
    abandoned.
    """
    timeout = client.timeout
    replies: List[Any] = []
    for start in range(0, len(requests), WINDOW):
        try:
            rvars = _submit(client, requests[start:start + WINDOW])
        except PyXSError as exc:  # the connection is unusable
            replies.extend(exc for _ in requests[start:])
            break
        try:
            # The daemon answers in order: once the last reply is in, so
            # are the others, and the waits below return at once.
            stalled = isinstance(_collect(rvars[-1], timeout), TimeoutError)
            for rvar in rvars:
                # Once a reply is late, take what is in, abandon the rest.
                reply = _collect(rvar, 0 if stalled else timeout)
                stalled = stalled or isinstance(reply, TimeoutError)
                replies.append(reply)
        except BaseException:  # interrupted: abandon what is in flight
            for rvar in rvars:
                _collect(rvar, 0)
            raise
        if stalled:
            replies.extend(
                PyXSError(errno.ECANCELED, "not sent: an earlier request of "
                          "the batch timed out")
                for _ in requests[len(replies):])
            break
    return replies


def _collect(rvar: Any, timeout: Optional[float]) -> Any:
    """The reply of ``rvar``, or the failure waiting for it. A failed wait
    abandons the request (the router drops its late reply)."""
    try:
        return rvar.get(timeout)
    except PyXSError as exc:
        return exc


def _failure(request: Request, reply: Any) -> Optional[PyXSError]:
    """The error a reply (or a failed wait) stands for, with its context;
    None for a reply of the request's own op (which the router checked)."""
    if isinstance(reply, PyXSError):
        if reply.op is None:
            reply.with_context(op_name(request.op), request.path)
        return reply
    if reply.op == request.op:
        return None
    return failure(request, reply.op, reply.payload)


# -- the batch calls -----------------------------------------------------


def _refused(call: str, index: int, exc: Exception) -> Exception:
    """Names the batch call and the item in a validation error."""
    where = "%s item %d" % (call, index)
    if isinstance(exc, _InvalidValue):  # "write_many item 1: invalid ..."
        exc.call = where
        return exc
    if isinstance(exc, PyXSError):
        exc.op = "%s: %s" % (where, exc.op) if exc.op else where
        return exc
    return type(exc)("%s item %d: %s" % (call, index, exc))


def _pairs(items: Union[Mapping[Path, Value], Iterable[Tuple[Path, Value]]]
           ) -> Iterable[Any]:
    if isinstance(items, (bytes, str)):
        raise TypeError("write_many() takes a mapping or (path, value) "
                        "pairs, not a single %s" % type(items).__name__)
    if isinstance(items, Mapping):
        return items.items()
    return items


def _item(call: str, index: int, build: Callable[..., Request],
          *args: Any) -> Request:
    """``build(*args)``; a refusal names the batch call and the item."""
    try:
        return build(*args)
    except (PyXSError, TypeError) as exc:
        raise _refused(call, index, exc) from None


def write_pair(item: Any, limit: int) -> Request:
    """The WRITE of one ``(path, value)`` item of ``write_many``."""
    try:
        path, value = item
    except (TypeError, ValueError):
        raise TypeError("expected a (path, value) pair, not %s"
                        % type(item).__name__) from None
    return build_write(path, value, limit, None)


def batch_reads(paths: Iterable[Path]) -> List[Request]:
    """The validated READs of ``read_many``."""
    if isinstance(paths, (bytes, str)):
        raise TypeError("read_many() takes a list of paths, not a single "
                        "%s" % type(paths).__name__)
    return [_item("read_many", index, build_read, path, None)
            for index, path in enumerate(paths)]


def batch_writes(items: Union[Mapping[Path, Value],
                              Iterable[Tuple[Path, Value]]],
                 limit: int) -> List[Request]:
    """The validated WRITEs of ``write_many``."""
    return [_item("write_many", index, write_pair, item, limit)
            for index, item in enumerate(_pairs(items))]


def outcome(request: Request, reply: Any) -> Any:
    """The value a reply stands for, or its error (returned)."""
    refusal = _failure(request, reply)
    if refusal is not None:
        return refusal
    try:
        return request.result(reply.payload)
    except PyXSError as exc:
        return exc


def read_values(requests: Sequence[Request], replies: Sequence[Any],
                default: Optional[bytes]) -> List[bytes]:
    """The values of ``read_many`` from its replies; raises the first
    error (a missing path gives ``default`` instead, unless None)."""
    values = []
    for request, reply in zip(requests, replies):
        if type(reply) is Packet and reply.op == _READ:
            values.append(reply.payload)  # the common case, made fast
            continue
        value = outcome(request, reply)
        if isinstance(value, PyXSError):
            if default is None or value.args[0] != errno.ENOENT:
                raise value
            value = default
        values.append(value)
    return values


def check_all(requests: Sequence[Request], replies: Sequence[Any]) -> None:
    """Raises the first error among the replies of a batch."""
    for request, reply in zip(requests, replies):
        if type(reply) is Packet and reply.payload == b"OK\x00" and \
                reply.op == request.op and request.parse is ok:
            continue  # the common case, made fast
        value = outcome(request, reply)
        if isinstance(value, PyXSError):
            raise value


def read_many(client: "Client", paths: Iterable[Path],
              default: Optional[bytes] = None) -> List[bytes]:
    """:meth:`~pyxs.client.Client.read_many`."""
    if default is not None:
        default = force_bytes(default, "default")
    requests = batch_reads(paths)
    return read_values(requests, exchange(client, requests), default)


def write_many(client: "Client",
               items: Union[Mapping[Path, Value],
                            Iterable[Tuple[Path, Value]]]) -> None:
    """:meth:`~pyxs.client.Client.write_many`."""
    requests = batch_writes(items, _limit(client))
    check_all(requests, exchange(client, requests))


class Pipeline:
    """Requests queued and sent together; see
    :meth:`~pyxs.client.Client.pipeline`.

    Each method validates its arguments at once (a refused request is
    never queued) and returns a :class:`Future`. :meth:`send` sends what
    is queued; leaving the ``with`` block sends the rest and raises the
    first error of the pipeline's requests, if any. Leaving it on an
    exception sends nothing more.
    """

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._queued: List[Future] = []
        self._sent: List[Future] = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is not None:
            queued, self._queued = self._queued, []
            _cancel(queued, errno.ECANCELED,
                    "not sent: the pipeline's block raised")
            return
        self.send()
        for future in self._sent:
            if future._error is not None:
                raise future._error

    def __len__(self) -> int:
        """Requests queued and not sent yet."""
        return len(self._queued)

    def send(self) -> None:
        """Sends the queued requests and waits for their replies."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        self._sent.extend(queued)
        try:
            replies = exchange(self.client, [f.request for f in queued])
        except BaseException:
            _cancel(queued, errno.EINTR, "interrupted before its reply came")
            raise
        for future, reply in zip(queued, replies):
            future._settle(reply)

    def _add(self, future: Future) -> Future:
        self._queued.append(future)
        return future

    def read(self, path: Path, default: Optional[bytes] = None) -> Future:
        """Queues a read; the future's result is the value."""
        request = build_read(path)
        if default is not None:
            default = force_bytes(default, "default")
        return self._add(Future(request, default, self))

    def write(self, path: Path, value: Value) -> Future:
        """Queues a write; the future's result is None."""
        return self._add(Future(build_write(path, value, _limit(self.client)),
                                None, self))

    def mkdir(self, path: Path) -> Future:
        """Queues :meth:`~pyxs.client.Client.mkdir`."""
        return self._add(Future(build_mkdir(path), None, self))

    def delete(self, path: Path) -> Future:
        """Queues :meth:`~pyxs.client.Client.delete`."""
        return self._add(Future(build_delete(path), None, self))


def _cancel(futures: Iterable[Future], number: int, text: str) -> None:
    for future in futures:
        if not future._done:
            future._settle(PyXSError(number, text))
