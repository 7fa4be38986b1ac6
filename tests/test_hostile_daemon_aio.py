"""The hypothesis-driven hostile daemon of test_hostile_daemon.py, against
pyxs.aio: coroutines sharing one pyxs.aio.Client make the calls, on one
event loop, while the fake daemon follows the drawn script. The same
properties hold: only pyxs exceptions escape, no call outlives its
timeout, a read's value was sent under that read's request id, a monitor
gets only events with its own token, and every value has its call's
shape. And asyncio logs no error: no reply future is left holding an
exception that nobody retrieves.

Deterministic for CI: derandomized, no example database, 30 examples;
``PYXS_FUZZ_EXAMPLES`` runs a longer search.
"""

import asyncio
import gc
import logging
import time
from typing import Any, Dict, List

from fakedaemon import FakeDaemon
from test_hostile_daemon import (
    TIMEOUT,
    Hostile,
    call_arguments,
    check_results,
    check_shape,
    fuzzed,
)

import pyxs.aio
from pyxs.exceptions import PyXSError

BOUND = 30  # the whole example; past this, a call hung


async def run_call(client: "pyxs.aio.Client", name: str, index: int,
                   results: Dict[int, Any]) -> None:
    start = time.monotonic()
    path = b"/k/%d" % index
    outcome: Any = None
    requests = 1
    try:
        if name == "monitor":
            requests = 2
            token = b"tok-%d" % index
            async with client.monitor() as monitor:
                await monitor.watch(path, token)
                event = await monitor.get(timeout=TIMEOUT)
            assert event.token == token, event
            outcome = ("value", event)
        elif name == "transaction":
            requests = 3
            async with client.transaction() as tx:
                check_shape(name, tx.tx_id)
                await tx.write(path, b"t")
            outcome = ("value", None)
        else:
            args, requests = call_arguments(name, index, path)
            if name == "walk":
                value: Any = [node async for node in client.walk(path)]
            else:
                value = await getattr(client, name)(*args)
            check_shape(name, value)
            outcome = ("value", value)
    except PyXSError as exc:
        outcome = ("error", exc)
    except pyxs.TransactionConflict as exc:  # a hostile commit reply
        outcome = ("error", exc)
    except BaseException as exc:  # what this test exists to catch
        outcome = ("escaped", exc)
    results[index] = (name, path, outcome, time.monotonic() - start,
                      requests)


class AsyncioLog(logging.Handler):
    """Errors asyncio logs, e.g. 'Future exception was never retrieved'
    for a reply future the client left behind."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@fuzzed
def test_hostile_daemon_against_pyxs_aio(script, calls):
    hostile = Hostile(script)
    results: Dict[int, Any] = {}

    async def main() -> None:
        async with pyxs.aio.Client(unix_socket_path=fake.socket_path,
                                   timeout=TIMEOUT) as client:
            await asyncio.gather(*(run_call(client, name, i, results)
                                   for i, name in enumerate(calls)))

    log = AsyncioLog()
    logging.getLogger("asyncio").addHandler(log)
    try:
        with FakeDaemon(hostile) as fake:
            asyncio.run(asyncio.wait_for(main(), BOUND))
        gc.collect()  # a future nobody retrieved logs when collected
    finally:
        logging.getLogger("asyncio").removeHandler(log)
    assert not log.messages, log.messages
    assert len(results) == len(calls)
    check_results(hostile, results)
