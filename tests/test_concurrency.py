"""Threads sharing a client, requests in flight, and a daemon that dies."""

import os
import threading
import time

import pytest
from xsassert import BOUND, SendLog, stopped

from pyxs.exceptions import ConnectionError, PyXSError

THREADS = 8


def run_threads(target, count=THREADS):
    errors = []

    def guarded(index):
        try:
            target(index)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,))
               for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND * 3)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_threads_share_one_client(client):
    rounds = 150

    def work(index):
        for i in range(rounds):
            path = b"/th/%d/k%d" % (index, i % 10)
            value = b"%d-%d" % (index, i)
            client.write(path, value)
            assert client.read(path) == value
            if i % 25 == 0:
                assert client.exists(b"/th/%d" % index)

    run_threads(work)
    for index in range(THREADS):
        assert sorted(client.list(b"/th/%d" % index)) == sorted(
            b"k%d" % i for i in range(10))
        for k in range(10):
            last = max(i for i in range(rounds) if i % 10 == k)
            assert client.read(b"/th/%d/k%d" % (index, k)) == \
                b"%d-%d" % (index, last)


def test_overlapping_requests_in_flight(daemon, client):
    for index in range(THREADS):
        client.write(b"/f/%d" % index, b"value-%d" % index)
    sent = SendLog(client)
    results = {}

    def read(index):
        results[index] = client.read(b"/f/%d" % index)

    with stopped(daemon):
        threads = [threading.Thread(target=read, args=(i,))
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        sent.wait_for(THREADS)  # all eight on the wire, none answered
        assert results == {}
    for thread in threads:
        thread.join(BOUND)
    assert results == {i: b"value-%d" % i for i in range(THREADS)}


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_daemon_killed_with_requests_in_flight(daemon):
    threads_before, fds_before = threading.active_count(), _fds()
    client = daemon.client(timeout=30)
    client.connect()
    monitor = client.monitor()
    monitor.watch(b"/k", b"t")
    assert monitor.get(BOUND) == (b"/k", b"t")
    sent = SendLog(client)
    failures = {}

    def read(index):
        try:
            client.read(b"/k/%d" % index)
        except PyXSError as exc:
            failures[index] = exc

    def wait_event():
        try:
            monitor.get(30)
        except PyXSError as exc:
            failures["monitor"] = exc

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=wait_event))
    with stopped(daemon):
        for thread in threads:
            thread.start()
        sent.wait_for(4)
        killed = time.monotonic()
        daemon.kill()
    for thread in threads:
        thread.join(BOUND)
    assert time.monotonic() - killed < 5  # promptly, not after timeouts
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(failures, key=str) == [0, 1, 2, 3, "monitor"]
    assert all(isinstance(exc, ConnectionError)
               for exc in failures.values())
    client.router.thread.join(BOUND)
    assert not client.router.thread.is_alive()
    # Every later call fails the same way, at once.
    with pytest.raises(ConnectionError):
        client.read(b"/k")
    with pytest.raises(ConnectionError):
        monitor.get(BOUND)
    client.close()
    # Nothing leaks: the router thread and every descriptor are gone.
    assert (threading.active_count(), _fds()) == (threads_before, fds_before)

    daemon.restart()
    with daemon.client(timeout=BOUND) as fresh:
        fresh.write(b"/k/again", b"v")
        assert fresh.read(b"/k/again") == b"v"


def test_daemon_killed_while_monitor_waits(daemon):
    with daemon.client(timeout=BOUND) as client, client.monitor() as m:
        m.watch(b"/idle", b"t")
        assert m.get(BOUND) == (b"/idle", b"t")
        outcome = []
        waiting = threading.Event()

        def waiter():
            waiting.set()
            try:
                for event in m.wait():
                    outcome.append(event)
            except ConnectionError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(BOUND)
        daemon.kill()
        thread.join(BOUND)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionError)
        client.router.thread.join(BOUND)
        assert not client.router.thread.is_alive()
        with pytest.raises(ConnectionError):
            client.write(b"/idle", b"x")


def test_daemon_killed_mid_transaction(daemon):
    client = daemon.client(timeout=30)
    client.connect()
    client.write(b"/tx/a", b"before")
    client.transaction()
    client.write(b"/tx/a", b"inside")
    daemon.kill()
    with pytest.raises(ConnectionError):
        client.commit()
    assert client.tx_id == 0  # the transaction is over either way
    client.router.thread.join(BOUND)
    assert not client.router.thread.is_alive()
    client.close()
    daemon.restart()  # a fresh, empty store on the same socket
    with daemon.client(timeout=BOUND) as fresh:
        assert fresh.exists(b"/tx/a") is False
        fresh.write(b"/tx/a", b"after")
        assert fresh.read(b"/tx/a") == b"after"
