"""Higher-level helpers built on the plain client and monitor.

:func:`run_transaction` re-runs a function until its transaction commits, as
the OCaml client's ``transaction`` does; :func:`wait_for` re-evaluates a
condition whenever watched paths change, as its ``wait`` does.
"""

import itertools
import random
import time
from typing import Any, Callable, Iterable, Optional, TypeVar, Union

from .exceptions import PyXSError, TimeoutError

__all__ = ["run_transaction", "wait_for", "TransactionConflict"]

T = TypeVar("T")

_wait_tokens = itertools.count()


class TransactionConflict(PyXSError):
    """Every attempt of :func:`run_transaction` met a conflicting change."""


def run_transaction(client: Any, func: Callable[[Any], T],
                    attempts: int = 10, backoff: float = 0.005,
                    max_backoff: float = 0.5) -> T:
    """Runs ``func(tx)`` inside a transaction until it commits.

    ``tx`` is a client sharing ``client``'s connection, in a fresh
    transaction on every attempt. When the commit fails because another
    writer changed a node the transaction touched (EAGAIN), ``func`` runs
    again after a randomised, doubling pause. An exception from ``func``
    rolls the transaction back and propagates.

    :param attempts: how many times to try before raising
        :class:`TransactionConflict`.
    :returns: what ``func`` returned in the attempt that committed.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    pause = backoff
    with client.__copy__() as tx:
        for attempt in range(attempts):
            tx.transaction()
            try:
                result = func(tx)
            except BaseException:
                if tx.tx_id:
                    try:
                        tx.rollback()
                    except PyXSError:
                        pass
                raise
            if tx.commit():
                return result
            if attempt + 1 < attempts:
                time.sleep(random.uniform(0, pause))
                pause = min(pause * 2, max_backoff)
    raise TransactionConflict(
        "transaction still conflicted after %d attempts" % attempts)


def wait_for(client: Any, condition: Callable[[Any], Optional[T]],
             paths: Iterable[Union[bytes, str]],
             timeout: Optional[float] = None) -> T:
    """Waits until ``condition(client)`` returns something other than None
    (or False), re-evaluating it whenever one of ``paths`` changes.

    The condition runs once right away, then after every watch event.
    Raises :class:`pyxs.exceptions.TimeoutError` when ``timeout`` seconds
    pass first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    token = b"pyxs-wait-%d" % next(_wait_tokens)
    with client.monitor() as monitor:
        for path in paths:
            monitor.watch(path, token)
        while True:
            result = condition(client)
            if result is not None and result is not False:
                return result
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("condition not met within %g s"
                                   % (timeout or 0))
            monitor.get(timeout=left)
            # Coalesce a burst of events into one re-evaluation.
            while not monitor.events.empty():
                monitor.get(timeout=0)
