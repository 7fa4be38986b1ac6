"""Resource hygiene: no leaked threads, descriptors or memory; fork and
Ctrl-C leave clients in a defined state."""

import gc
import os
import threading
import tracemalloc

import pytest
from fakedaemon import FakeDaemon, honest
from xsassert import ctrl_c_once

from pyxs import Client
from pyxs._internal import Op
from pyxs.exceptions import ConnectionError

CYCLES = 1000


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def settle():
    gc.collect()
    return threading.active_count(), open_fds()


def test_client_open_close_cycles_leak_nothing(daemon):
    with daemon.client() as c:  # warm up lazy imports and caches
        c.write(b"/cycle", b"0")
    threads, fds = settle()
    tracemalloc.start()
    try:
        for i in range(CYCLES):
            with daemon.client() as c:
                if i == 10:
                    before, _ = tracemalloc.get_traced_memory()
                c.read(b"/cycle")
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert settle() == (threads, fds)
    # A leak of even one small object per cycle would show as ~100 KB.
    assert after - before < 64 * 1024


def test_watch_unwatch_cycles_leak_nothing(client):
    client.write(b"/w", b"")
    m = client.monitor()
    m.watch(b"/w", b"warm")
    m.unwatch(b"/w", b"warm")
    threads, fds = settle()
    tracemalloc.start()
    try:
        for i in range(CYCLES):
            if i == 10:
                gc.collect()
                before, _ = tracemalloc.get_traced_memory()
            m.watch(b"/w", b"tok")
            m.unwatch(b"/w", b"tok")
            # Drain the initial event of each watch, as a real user would.
            while not m.events.empty():
                m.events.get()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert settle() == (threads, fds)
    assert client.router.stats()["watch_tokens"] == set()
    assert after - before < 64 * 1024


def test_undrained_monitor_does_not_block_other_users(client):
    m = client.monitor()
    m.watch(b"/busy", b"tok")
    other = Client(router=client.router)
    with other:
        for i in range(2000):
            other.write(b"/busy/k%d" % i, b"x")
        assert other.read(b"/busy/k1999") == b"x"
    assert not m.events.empty()


# Forking a process that holds a client (hence a router thread) is the
# very case under test; Python 3.12+ warns about any such fork.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_fork_child_gets_a_clear_error_and_can_reconnect(daemon):
    with daemon.client() as c:
        c.write(b"/fork", b"parent")
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            status = 1
            try:
                try:
                    c.read(b"/fork")
                except ConnectionError as exc:
                    if "parent process" in str(exc):
                        with daemon.client() as fresh:
                            fresh.write(b"/fork", b"child")
                            status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        # The parent's connection was not disturbed by the child.
        assert c.read(b"/fork") == b"child"


def test_ctrl_c_during_a_blocking_call_leaves_the_client_usable():
    arrived = threading.Event()

    def never_answer_block(conn, request):
        if request.op == Op.READ and request.payload.startswith(b"/block"):
            arrived.set()
            return
        honest(conn, request)

    with FakeDaemon(never_answer_block) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=10) as c:
        with ctrl_c_once(arrived), pytest.raises(KeyboardInterrupt):
            c.read(b"/block")
        try:
            value = c.read(b"/a")
        except ConnectionError as exc:
            # The signal landed while the request was still being written
            # (the write's outcome is unknown): the client closed cleanly.
            assert "interrupted" in str(exc)
        else:
            # Usually it lands in the wait: the client stays usable, and
            # only the unanswered /block request is still outstanding.
            assert value == b"value"
            assert c.router.stats()["in_flight"] == 1


def test_interrupt_after_a_whole_send_keeps_the_connection(monkeypatch):
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=10) as c:
        connection = c.router.connection
        real_send = connection.send_bytes

        def send_then_interrupt(data, *deadline):
            real_send(data, *deadline)
            raise KeyboardInterrupt  # as if Ctrl-C came right after

        monkeypatch.setattr(connection, "send_bytes", send_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            c.read(b"/a")
        monkeypatch.undo()
        assert c.read(b"/b") == b"value"  # the late reply went nowhere
        assert c.router.stats()["in_flight"] == 0


def test_interrupt_in_the_middle_of_a_send_closes_the_connection(
        monkeypatch):
    with FakeDaemon(honest) as fake, \
            Client(unix_socket_path=fake.socket_path, timeout=10) as c:
        connection = c.router.connection
        real_write = connection._write
        calls = []

        def half_then_interrupt(view):
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
            return real_write(view[:5])

        monkeypatch.setattr(connection, "_write", half_then_interrupt)
        monkeypatch.setattr(connection, "_write_nowait", half_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            c.read(b"/a")
        monkeypatch.undo()
        with pytest.raises(ConnectionError, match="interrupted"):
            c.read(b"/b")
