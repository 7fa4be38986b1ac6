"""Timeouts that bound the whole call, bounded memory for abandoned
requests, and the life cycle of monitors and forgotten clients (issue 14,
items 2 and 4).

All four failed before the router core of issue 13 (a writer stuck in
send() for the whole stall, 565 KB kept by 3,000 abandoned requests, a
forked child's monitor waiting for ever, 50 threads and 250 descriptors
kept by dropped clients). Each is bounded so that, failing, it does not
hang the suite.
"""

import gc
import os
import socket
import tempfile
import threading
import time
import tracemalloc
import warnings
import weakref

import pytest
from xsassert import BOUND

from pyxs import Client
from pyxs.exceptions import ConnectionError, PyXSError, TimeoutError
from pyxs.testing import XenStoreDaemon


class Listener:
    """A Unix socket server that accepts one connection and then either
    never reads from it (``read=False``) or reads and throws the bytes
    away, never answering."""

    def __init__(self, read: bool) -> None:
        self.directory = tempfile.mkdtemp(prefix="pyxs-limits-")
        self.socket_path = os.path.join(self.directory, "socket")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.socket_path)
        self.server.listen(1)
        self.peer = None
        self.read = read
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.peer, _ = self.server.accept()
        except OSError:
            return
        while self.read:
            try:
                if not self.peer.recv(1 << 16):
                    return
            except OSError:
                return

    def hang_up(self) -> None:
        if self.peer is not None:
            self.peer.close()  # unblocks a writer stuck on it

    def close(self) -> None:
        self.hang_up()
        self.server.close()
        self.thread.join(BOUND)
        os.unlink(self.socket_path)
        os.rmdir(self.directory)

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def test_a_blocked_send_honours_the_timeout():
    # A peer that stops reading (or a SIGSTOPped xenstored): once the
    # socket buffer is full, a writer used to stay in send() for the whole
    # stall, whatever Client(timeout=...) said.
    timeout = 0.5
    with Listener(read=False) as peer:
        c = Client(unix_socket_path=peer.socket_path, timeout=timeout)
        c.connect()
        sock = socket.socket(fileno=os.dup(c.router.connection.fileno()))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.close()  # the option stays on the shared socket
        outcomes = []

        def writer(n):
            start = time.monotonic()
            try:
                c.write(b"/big/%d" % n, b"x" * 4000)
                outcomes.append(("value", None, 0))
            except PyXSError as exc:
                outcomes.append(("error", exc, time.monotonic() - start))
            except BaseException as exc:
                outcomes.append(("escaped", exc, time.monotonic() - start))

        threads = [threading.Thread(target=writer, args=(n,), daemon=True)
                   for n in range(32)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout + 5
        for thread in threads:
            thread.join(max(0, deadline - time.monotonic()))
        stuck = sum(thread.is_alive() for thread in threads)
        try:
            assert stuck == 0, "%d callers still blocked" % stuck
            assert len(outcomes) == 32
            for kind, exc, _ in outcomes:
                assert kind == "error"
                assert isinstance(exc, (TimeoutError, ConnectionError))
            # A request written in part desynchronises the stream: the
            # connection is failed, with a clear error, not reused.
            with pytest.raises(ConnectionError) as info:
                c.read(b"/after")
            assert len(str(info.value)) < 200
        finally:
            peer.hang_up()  # unblocks any writer still in send()
            for thread in threads:
                thread.join(BOUND)
            c.close()


def test_abandoned_requests_keep_bounded_memory():
    # 3,000 requests timing out against a daemon that reads and never
    # answers used to keep about 1 MB: every abandoned slot stayed.
    with Listener(read=True) as peer:
        c = Client(unix_socket_path=peer.socket_path, timeout=0.001)
        c.connect()
        errors = set()

        def burst(count):
            for n in range(count):
                try:
                    c.read(b"/never/%d" % n)
                except (TimeoutError, ConnectionError) as exc:
                    errors.add(type(exc))

        try:
            burst(100)  # warm up: first-use allocations are not a leak
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                threads = [threading.Thread(target=burst, args=(300,))
                           for _ in range(10)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(BOUND * 6)
                del threads
                gc.collect()
                growth = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
        finally:
            c.close()
        assert errors <= {TimeoutError, ConnectionError}
        assert growth < 256 * 1024, "%d bytes kept" % growth


# Forking a process with the router's thread running is the case under
# test; Python 3.12+ warns about any such fork.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_after_fork_the_childs_monitors_fail_at_once():
    # The child's calls fail at once (the connection is the parent's);
    # its monitors used to wait forever.
    with XenStoreDaemon("embedded") as daemon, \
            daemon.client(timeout=BOUND) as c:
        watching = c.monitor()
        watching.watch(b"/fork/w", b"tok")
        assert watching.get(timeout=BOUND) == (b"/fork/w", b"tok")
        idle = c.monitor()
        pid = os.fork()
        if pid == 0:  # the child: report by exit status only
            status = 1
            try:
                for monitor in (watching, idle):
                    try:
                        monitor.get(timeout=2)
                    except ConnectionError:
                        status = 0 if status != 2 else 2
                    except BaseException:
                        status = 2
                    else:
                        status = 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        c.write(b"/fork/w", b"parent")  # the parent's monitor still works
        assert watching.get(timeout=BOUND) == (b"/fork/w", b"tok")


def _counts():
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_dropped_clients_release_thread_and_descriptors():
    # 50 connected Clients dropped without close() used to keep 50 threads
    # and 250 descriptors after garbage collection.
    with XenStoreDaemon("embedded") as daemon:
        gc.collect()
        before = _counts()
        threads = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for n in range(50):
                c = Client(unix_socket_path=daemon.socket_path,
                           timeout=BOUND)
                c.connect()
                c.write(b"/gc/%d" % n, b"x")
                threads.append(weakref.ref(c.router.thread))
            del c
            gc.collect()
            deadline = time.monotonic() + 5
            for ref in threads:
                thread = ref()
                if thread is not None:
                    thread.join(max(0, deadline - time.monotonic()))
                del thread
            gc.collect()
            after = _counts()
        warned = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert after == before
        assert len(warned) >= 50
