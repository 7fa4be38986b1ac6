"""Transactions, run_transaction and wait_for against real daemons."""

import builtins
import errno
import threading
import time

import pytest
from conftest import expect
from xsassert import BOUND

from pyxs import TransactionConflict, run_transaction, wait_for
from pyxs.exceptions import PyXSError, TimeoutError


def test_commit_makes_writes_visible(daemon, client):
    with daemon.client(timeout=BOUND) as other:
        tx_id = client.transaction()
        assert tx_id == client.tx_id and tx_id > 0
        client.write(b"/t/a", b"1")
        client.mkdir(b"/t/b")
        assert client.read(b"/t/a") == b"1"
        assert not other.exists(b"/t")
        assert client.commit() is True
        assert client.tx_id == 0
        assert other.read(b"/t/a") == b"1"
        assert sorted(other.list(b"/t")) == [b"a", b"b"]


def test_rollback_discards(client):
    client.write(b"/r", b"before")
    client.transaction()
    client.write(b"/r", b"inside")
    client.delete(b"/r")
    client.rollback()
    assert client.tx_id == 0
    assert client.read(b"/r") == b"before"


def test_transaction_sees_a_snapshot(daemon, client):
    client.write(b"/s", b"old")
    with daemon.client(timeout=BOUND) as other:
        client.transaction()
        assert client.read(b"/s") == b"old"
        other.write(b"/s", b"new")
        assert client.read(b"/s") == b"old"
        client.rollback()
    assert client.read(b"/s") == b"new"


def test_ealready_and_no_transaction(client):
    client.transaction()
    with pytest.raises(PyXSError) as info:
        client.transaction()
    assert info.value.args[0] == errno.EALREADY
    client.rollback()
    for end in (client.commit, client.rollback):
        with pytest.raises(PyXSError) as info:
            end()
        assert info.value.args[0] == errno.EINVAL


def test_conflicting_commit_returns_false(daemon, client):
    client.write(b"/c/x", b"0")
    with daemon.client(timeout=BOUND) as other:
        client.transaction()
        other.transaction()
        client.write(b"/c/x", client.read(b"/c/x") + b"1")
        other.write(b"/c/x", other.read(b"/c/x") + b"2")
        assert client.commit() is True
        assert other.commit() is False  # EAGAIN
        assert other.tx_id == 0
        assert other.read(b"/c/x") == b"01"
        # The transaction is over: a new one works.
        other.transaction()
        other.write(b"/c/x", other.read(b"/c/x") + b"2")
        assert other.commit() is True
    assert client.read(b"/c/x") == b"012"


def test_write_outside_conflicts(daemon, client):
    client.write(b"/c/y", b"0")
    with daemon.client(timeout=BOUND) as other:
        client.transaction()
        client.read(b"/c/y")
        client.write(b"/c/y", b"tx")
        other.write(b"/c/y", b"outside")
        assert client.commit() is False
    assert client.read(b"/c/y") == b"outside"


def test_unrelated_sibling_write(daemon, client):
    client.write(b"/sib/a", b"")
    with daemon.client(timeout=BOUND) as other:
        client.transaction()
        client.write(b"/sib/new", b"tx")
        other.write(b"/sib/other", b"outside")
        # C xenstored conflicts on the shared parent's child list;
        # oxenstored merges the two.
        assert client.commit() is expect(daemon.kind, {
            "default": False, "oxenstored": True})


def test_run_transaction_retries_on_conflict(daemon, client):
    client.write(b"/counter", b"0")
    attempts = []
    with daemon.client(timeout=BOUND) as other:
        def increment(tx):
            value = int(tx.read(b"/counter"))
            attempts.append(value)
            if len(attempts) == 1:
                other.write(b"/counter", b"10")  # conflicts with attempt 1
            tx.write(b"/counter", b"%d" % (value + 1))
            return value + 1

        assert run_transaction(client, increment, backoff=0.001) == 11
    assert attempts == [0, 10]
    assert client.read(b"/counter") == b"11"
    assert client.tx_id == 0


def test_run_transaction_method(client):
    assert client.run_transaction(
        lambda tx: tx.write(b"/m", b"v") or tx.tx_id) > 0
    assert client.read(b"/m") == b"v"


def test_run_transaction_gives_up(daemon, client):
    calls = []
    with daemon.client(timeout=BOUND) as other:
        def always_conflicts(tx):
            calls.append(tx.read(b"/g", b""))
            other.write(b"/g", b"%d" % len(calls))
            tx.write(b"/g", b"mine")

        with pytest.raises(TransactionConflict, match="3 attempts") as info:
            run_transaction(client, always_conflicts, attempts=3,
                            backoff=0.001)
    assert isinstance(info.value, PyXSError)
    assert calls == [b"", b"1", b"2"]
    assert client.read(b"/g") == b"3"


def test_run_transaction_rolls_back_on_error(client):
    def fails(tx):
        tx.write(b"/never", b"v")
        raise KeyError("boom")

    with pytest.raises(KeyError):
        run_transaction(client, fails)
    assert not client.exists(b"/never")
    with pytest.raises(ValueError):
        run_transaction(client, fails, attempts=0)


def test_wait_for_times_out(client):
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        wait_for(client, lambda c: c.read(b"/ready", None) if
                 c.exists(b"/ready") else None, [b"/ready"], timeout=0.2)
    assert isinstance(info.value, builtins.TimeoutError)
    assert 0.15 <= time.monotonic() - started < 5


def test_wait_for_condition_set_by_another_thread(daemon, client):
    checked_false = threading.Event()
    evaluations = []

    def condition(c):
        value = c.read(b"/state", b"")
        evaluations.append(value)
        if value == b"running":
            return value
        checked_false.set()
        return None

    def writer():
        with daemon.client(timeout=BOUND) as other:
            assert checked_false.wait(BOUND)
            other.write(b"/state", b"booting")
            other.write(b"/state", b"running")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wait_for(client, condition, [b"/state"],
                        timeout=BOUND) == b"running"
    finally:
        thread.join(BOUND)
    assert evaluations[0] == b"" and evaluations[-1] == b"running"
