"""Watches and the Monitor against real daemons."""

import builtins
import errno
import select
import time

import pytest
from xsassert import BOUND, events_before_marker

import pyxs
from pyxs.exceptions import InvalidPath, InvalidToken, PyXSError, TimeoutError


def test_immediate_event_and_child_changes(client):
    with client.monitor() as m:
        m.watch(b"/w", b"tok")
        assert m.get(BOUND) == (b"/w", b"tok")
        client.write(b"/w/a/b", b"1")
        assert m.get(BOUND) == (b"/w/a/b", b"tok")
        client.mkdir(b"/w/m")
        assert m.get(BOUND) == (b"/w/m", b"tok")
        client.write(b"/w", b"self")
        assert m.get(BOUND) == (b"/w", b"tok")
        client.delete(b"/w/a")
        assert m.get(BOUND) == (b"/w/a", b"tok")
        client.write(b"/elsewhere", b"x")
        client.write(b"/wx", b"not below /w")
        assert events_before_marker(m) == []


def test_distinct_keys_each_get_an_event(client):
    with client.monitor() as m:
        m.watch(b"/many", b"t")
        assert m.get(BOUND) == (b"/many", b"t")
        for i in range(20):
            client.write(b"/many/k%d" % i, b"v")
        paths = [m.get(BOUND).path for _ in range(20)]
        assert paths == [b"/many/k%d" % i for i in range(20)]


def test_events_from_another_connection(daemon, client):
    with client.monitor() as m, daemon.client(timeout=BOUND) as other:
        m.watch("/o", "str-token")
        assert m.get(BOUND) == (b"/o", b"str-token")
        other.write(b"/o/x", b"1")
        assert next(m.wait(timeout=BOUND)) == (b"/o/x", b"str-token")


def test_permission_change_fires(client):
    client.write(b"/pc", b"")
    with client.monitor() as m:
        m.watch(b"/pc", b"t")
        assert m.get(BOUND) == (b"/pc", b"t")
        client.set_perms(b"/pc", [b"n0", b"r3"])
        assert m.get(BOUND) == (b"/pc", b"t")


def test_parent_removal_fires_with_the_watched_path(client):
    with client.monitor() as m:
        m.watch(b"/p/q/r", b"deep")
        assert m.get(BOUND) == (b"/p/q/r", b"deep")
        client.write(b"/p/q/r/s", b"x")
        assert m.get(BOUND) == (b"/p/q/r/s", b"deep")
        client.delete(b"/p")
        assert m.get(BOUND) == (b"/p/q/r", b"deep")
        assert events_before_marker(m) == []


def test_events_only_on_commit(daemon, client):
    with daemon.client(timeout=BOUND) as writer, client.monitor() as m:
        m.watch(b"/tx", b"t")
        assert m.get(BOUND) == (b"/tx", b"t")
        writer.transaction()
        writer.write(b"/tx/a", b"1")
        writer.write(b"/tx/b", b"2")
        assert events_before_marker(m) == []
        assert writer.commit() is True
        assert {m.get(BOUND), m.get(BOUND)} == {(b"/tx/a", b"t"),
                                                (b"/tx/b", b"t")}
        writer.transaction()
        writer.write(b"/tx/c", b"3")
        writer.rollback()
        assert events_before_marker(m) == []


def test_two_tokens_on_one_path(client):
    with client.monitor() as m:
        m.watch(b"/two", b"one")
        m.watch(b"/two", b"two")
        assert {m.get(BOUND), m.get(BOUND)} == {(b"/two", b"one"),
                                                (b"/two", b"two")}
        assert m.watched == {b"/two"}
        client.write(b"/two/x", b"")
        # The order of the two events differs between daemons.
        assert {m.get(BOUND), m.get(BOUND)} == {(b"/two/x", b"one"),
                                                (b"/two/x", b"two")}
        m.unwatch(b"/two", b"one")
        client.write(b"/two/y", b"")
        assert m.get(BOUND) == (b"/two/y", b"two")
        assert events_before_marker(m) == []


def test_special_paths(client):
    with client.monitor() as m:
        m.watch("@introduceDomain", b"i")
        assert m.get(BOUND) == (b"@introduceDomain", b"i")
        m.watch(b"@releaseDomain", b"r")
        assert m.get(BOUND) == (b"@releaseDomain", b"r")
        client.write(b"/ordinary", b"")
        assert events_before_marker(m) == []
        assert m.watched == {b"@introduceDomain", b"@releaseDomain"}


def test_invalid_watches_are_refused_before_sending(client):
    with client.monitor() as m:
        with pytest.raises(InvalidPath):
            m.watch(b"@other", b"t")
        with pytest.raises(InvalidPath):
            m.watch(b"/a/", b"t")
        with pytest.raises(InvalidToken):
            m.watch(b"/a", b"")
        with pytest.raises(InvalidToken):
            m.watch(b"/a", b"t\x00")
        assert m.watched == set()
        assert events_before_marker(m) == []


def test_unwatch_and_leftover_events(client):
    m = client.monitor()
    m.watch(b"/u", b"t")
    assert m.get(BOUND) == (b"/u", b"t")
    client.write(b"/u/x", b"1")
    m.unwatch(b"/u", b"t")  # its reply comes after the write's event
    assert m.watched == set()
    assert not m.events.empty()
    client.write(b"/u/y", b"2")  # no longer watched: no event
    assert events_before_marker(m) == [(b"/u/x", b"t")]
    assert m.events.empty()

    m.watch(b"/u", b"t")
    assert m.get(BOUND) == (b"/u", b"t")
    client.write(b"/u/z", b"3")
    m.unwatch(b"/u", b"t")
    with pytest.raises(TimeoutError):
        m.get(timeout=0.05)  # the leftover event is for an unwatched path
    m.watch(b"/u", b"t")
    client.write(b"/u/w", b"4")
    m.unwatch(b"/u", b"t")
    assert next(m.wait(unwatched=True, timeout=BOUND)) == (b"/u", b"t")
    assert next(m.wait(unwatched=True, timeout=BOUND)) == (b"/u/w", b"t")
    with pytest.raises(PyXSError) as info:
        m.unwatch(b"/u", b"t")
    assert info.value.args[0] == errno.ENOENT


def test_wait_timeout(client):
    with client.monitor() as m:
        m.watch(b"/quiet", b"t")
        assert m.get(BOUND) == (b"/quiet", b"t")
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            next(m.wait(timeout=0.2))
        assert isinstance(info.value, builtins.TimeoutError)
        assert 0.15 <= time.monotonic() - started < 5
        with pytest.raises(builtins.TimeoutError):
            m.get(timeout=0)
        client.write(b"/quiet", b"loud")
        assert next(m.wait(timeout=BOUND)) == (b"/quiet", b"t")


def test_fileno_with_select(client):
    with client.monitor() as m:
        m.watch(b"/sel", b"t")
        assert m.get(BOUND) == (b"/sel", b"t")
        assert select.select([m], [], [], 0)[0] == []
        client.write(b"/sel/a", b"")
        client.write(b"/sel/b", b"")
        assert select.select([m], [], [], BOUND)[0] == [m]
        assert m.get(0) == (b"/sel/a", b"t")
        assert select.select([m.fileno()], [], [], BOUND)[0] == [m.fileno()]
        assert m.get(0) == (b"/sel/b", b"t")
        assert select.select([m], [], [], 0)[0] == []
        assert m.events.empty()


def test_fileno_readable_for_events_queued_before(client):
    with client.monitor() as m:
        m.watch(b"/early", b"t")
        client.write(b"/early/x", b"")
        # oxenstored sends a write's events after its reply, C xenstored
        # before: one more round trip makes sure both events are queued.
        client.exists(b"/")
        assert not m.events.empty()
        assert select.select([m], [], [], 0)[0] == [m]
        assert m.get(0) == (b"/early", b"t")
        assert select.select([m], [], [], 0)[0] == [m]
        assert m.get(0) == (b"/early/x", b"t")
        assert select.select([m], [], [], 0)[0] == []


def test_monitor_context_manager_removes_watches(client):
    with client.monitor() as m:
        m.watch(b"/cm", b"a")
        m.watch(b"/cm2", b"b")
        assert m.watched == {b"/cm", b"/cm2"}
    assert m.watched == set()
    client.write(b"/cm/x", b"")  # the client stays usable
    with client.monitor() as probe:
        probe.watch(b"/cm", b"a")  # no EEXIST: the old watch is gone
        assert probe.get(BOUND) == (b"/cm", b"a")


def test_module_level_monitor(daemon):
    with pyxs.monitor(unix_socket_path=daemon.socket_path,
                      timeout=BOUND) as m:
        m.watch(b"/mod", b"t")
        assert m.get(BOUND) == (b"/mod", b"t")
        with daemon.client(timeout=BOUND) as other:
            other.write(b"/mod/k", b"v")
        assert next(m.wait(timeout=BOUND)) == (b"/mod/k", b"t")
        router = m.client.router
        assert router.thread.is_alive()
    router.thread.join(BOUND)
    assert not router.thread.is_alive()
