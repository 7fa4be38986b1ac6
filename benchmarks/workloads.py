"""Benchmark workloads, run in a child process for one implementation.

Usage: ``python workloads.py IMPL SOCKET WORKLOAD SIZE [THREADS]`` where
IMPL is ``pyxs`` (whichever pyxs is importable: ours or 0.4.1 from a
throwaway venv), ``pyxs-seq`` (ours, but the batch workloads make one
call per key, as 0.4.1 must, and the aio workloads use the threaded
client) or ``libxenstore`` (Xen's C library through
ctypes, the floor). Prints one JSON object: operations, seconds, CPU seconds.
"""

import ctypes
import json
import os
import sys
import threading
import time

PREFIX = b"/bench"


class LibXenstore:
    """The few libxenstore calls the workloads need, through ctypes."""

    def __init__(self, socket_path):
        os.environ["XENSTORED_PATH"] = socket_path
        self.lib = ctypes.CDLL("libxenstore.so.4")
        self.libc = ctypes.CDLL(None)
        self.lib.xs_open.restype = ctypes.c_void_p
        self.lib.xs_read.restype = ctypes.c_void_p
        self.lib.xs_read.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                     ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_uint)]
        self.lib.xs_write.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                      ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_uint]
        self.lib.xs_directory.restype = ctypes.POINTER(ctypes.c_char_p)
        self.lib.xs_directory.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                          ctypes.c_char_p,
                                          ctypes.POINTER(ctypes.c_uint)]
        self.lib.xs_transaction_start.restype = ctypes.c_uint32
        self.lib.xs_transaction_start.argtypes = [ctypes.c_void_p]
        self.lib.xs_transaction_end.restype = ctypes.c_bool
        self.lib.xs_transaction_end.argtypes = [ctypes.c_void_p,
                                                ctypes.c_uint32,
                                                ctypes.c_bool]
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.tx_id = 0
        self.handle = self.lib.xs_open(0)
        if not self.handle:
            raise OSError("xs_open failed")

    def read(self, path):
        length = ctypes.c_uint()
        pointer = self.lib.xs_read(self.handle, self.tx_id, path,
                                   ctypes.byref(length))
        if not pointer:
            raise OSError(ctypes.get_errno(), "xs_read")
        value = ctypes.string_at(pointer, length.value)
        self.libc.free(pointer)
        return value

    def write(self, path, value):
        if not self.lib.xs_write(self.handle, self.tx_id, path, value,
                                 len(value)):
            raise OSError("xs_write")

    def transaction(self):
        self.tx_id = self.lib.xs_transaction_start(self.handle)
        if not self.tx_id:
            raise OSError("xs_transaction_start")

    def commit(self):
        tx_id, self.tx_id = self.tx_id, 0
        return self.lib.xs_transaction_end(self.handle, tx_id, False)

    def list(self, path):
        count = ctypes.c_uint()
        names = self.lib.xs_directory(self.handle, 0, path,
                                      ctypes.byref(count))
        if not names:
            raise OSError("xs_directory")
        result = [names[i] for i in range(count.value)]
        self.libc.free(ctypes.cast(names, ctypes.c_void_p))
        return result

    def walk(self, top):
        """Sequential walk, as a C tool (xenstore-ls) does it."""
        stack = [top]
        while stack:
            path = stack.pop()
            value = self.read(path)
            children = self.list(path)
            yield path, value, children
            stack.extend(path + b"/" + name for name in reversed(children))


def daemon_cpu():
    """CPU seconds the daemon (PYXS_BENCH_DAEMON_PID) has used, or None."""
    pid = os.environ.get("PYXS_BENCH_DAEMON_PID")
    if not pid:
        return None
    try:
        with open("/proc/%s/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(func):
    start_daemon = daemon_cpu()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    operations = func()
    result = {"operations": operations,
              "seconds": time.perf_counter() - start_wall,
              "cpu_seconds": time.process_time() - start_cpu}
    end_daemon = daemon_cpu()
    if start_daemon is not None and end_daemon is not None:
        result["daemon_cpu_seconds"] = end_daemon - start_daemon
    return result


def seq_read(client, size, threads):
    client.write(PREFIX + b"/r", b"value")

    def run():
        for _ in range(size):
            client.read(PREFIX + b"/r")
        return size
    return timed(run)


def seq_write(client, size, threads):
    def run():
        for i in range(size):
            client.write(PREFIX + b"/w%d" % (i % 64), b"value")
        return size
    return timed(run)


def threaded_read(client, size, threads):
    client.write(PREFIX + b"/t", b"value")
    per_thread = size // threads
    barrier = threading.Barrier(threads + 1)

    def worker():
        barrier.wait()
        for _ in range(per_thread):
            client.read(PREFIX + b"/t")

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for worker_thread in workers:
        worker_thread.start()

    def run():
        barrier.wait()
        for worker_thread in workers:
            worker_thread.join()
        return per_thread * threads
    return timed(run)


def populate_tree(client, size):
    """size nodes: 10 domains, each with devices and keys below them."""
    made = 0
    domain = 0
    while made < size:
        for device in range(10):
            for key in range(9):
                if made >= size:
                    return
                client.write(PREFIX + b"/tree/d%d/dev%d/k%d"
                             % (domain, device, key), b"v%d" % made)
                made += 1
        domain += 1


def walk(client, size, threads):
    populate_tree(client, size)

    def run():
        return sum(1 for _ in client.walk(PREFIX + b"/tree"))
    return timed(run)


def transaction(client, size, threads):
    def run():
        for i in range(size):
            client.transaction()
            client.write(PREFIX + b"/tx%d" % (i % 16), b"value")
            client.commit()
        return size
    return timed(run)


def watch_events(client, size, threads):
    """Events delivered to a monitor for ``size`` writes.

    The writes go to 64 existing keys in turn, as in seq_write: creating
    ``size`` new nodes instead would measure xenstored, whose cost per new
    child grows with the size of the directory. Every write fires exactly
    one event, so counting ``size`` events proves none was dropped.
    """
    for i in range(64):
        client.write(PREFIX + b"/ev/k%d" % i, b"x")
    monitor = client.monitor()
    monitor.watch(PREFIX + b"/ev", b"tok")
    events = monitor.wait()  # pyxs 0.4.1 has no timeout here
    next(events)  # the initial event
    writer_client = type(client)(router=client.router)

    def writer():
        for i in range(size):
            writer_client.write(PREFIX + b"/ev/k%d" % (i % 64), b"y")

    def run():
        thread = threading.Thread(target=writer)
        thread.start()
        for _ in range(size):  # a dropped event hangs: run.py times out
            next(events)
        thread.join()
        return size
    return timed(run)


def pending_memory(client, size, threads):
    """Bytes of Python memory per request sent and not yet answered.

    No thread reads (no watches, nobody waits), so replies stay in the
    socket and the requests stay pending while memory is measured.
    Needs this pyxs's Router.submit.
    """
    import tracemalloc

    from pyxs._internal import Op
    router = client.router
    client.write(PREFIX + b"/m", b"value")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rvars = [router.submit(Op.READ, 0, PREFIX + b"/m\0")
             for _ in range(size)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for rvar in rvars:
        rvar.get(60)
    return {"operations": size, "seconds": 1.0,
            "bytes_per_request": (after - before) / size}


def big_list(client, size, threads):
    for i in range(size):
        client.write(PREFIX + b"/big/child-with-a-longish-name-%05d" % i,
                     b"x")

    def run():
        names = client.list(PREFIX + b"/big")
        assert len(names) == size, len(names)
        return 1
    return timed(run)


def idle(client, size, threads):
    """CPU used by a connected client and a waiting monitor in 1 s."""
    monitor = client.monitor()
    monitor.watch(PREFIX + b"/idle", b"idle")
    events = monitor.wait()
    next(events)  # the event every new watch fires at once
    # Blocks for the whole measurement: nothing changes under /idle.
    waiter = threading.Thread(target=lambda: next(events), daemon=True)
    waiter.start()
    start_cpu = time.process_time()
    time.sleep(1.0)  # measuring idleness is the point here
    return {"operations": 0, "seconds": 1.0,
            "cpu_seconds": time.process_time() - start_cpu}


BURST = 200  # keys a domain start writes; keys read_many reads at once
SEQUENTIAL = False  # set by main() for the pyxs-seq implementation


def _batched(client):
    return not SEQUENTIAL and hasattr(client, "write_many")


def domain_start(client, size, threads):
    """``size`` domain starts: a transaction writing BURST keys, then its
    commit. This pyxs sends the writes with one write_many(); pyxs 0.4.1,
    pyxs-seq and libxenstore (xs_write) one request at a time. Eight
    domains' keys are rewritten in turn, so the store does not grow."""
    bursts = [[(PREFIX + b"/local/domain/%d/device/vif/%d/key-%d"
                % (d, k // 20, k), b"value-%d" % k) for k in range(BURST)]
              for d in range(8)]
    batched = _batched(client)

    def run():
        for i in range(size):
            items = bursts[i % 8]
            client.transaction()
            if batched:
                client.write_many(items)
            else:
                for path, value in items:
                    client.write(path, value)
            if not client.commit():
                raise RuntimeError("unexpected conflict")
        return size
    return timed(run)


def read_many(client, size, threads):
    """Reads of BURST existing keys, ``size`` times: one read_many() with
    this pyxs, one read per key otherwise. Counted in reads."""
    paths = [PREFIX + b"/many/key-%d" % k for k in range(BURST)]
    for path in paths:
        client.write(path, b"value-for-" + path)
    batched = _batched(client)

    def run():
        for _ in range(size):
            if batched:
                values = client.read_many(paths)
            else:
                values = [client.read(path) for path in paths]
            assert len(values) == BURST
        return size * BURST
    return timed(run)


def aio_seq_read(client, size, threads):
    """seq_read through pyxs.aio (pyxs-seq: the threaded client)."""
    if SEQUENTIAL:
        return seq_read(client, size, threads)
    import asyncio

    import pyxs.aio
    client.write(PREFIX + b"/r", b"value")

    async def main():
        async with pyxs.aio.Client(client.router.connection.path) as c:
            start = time.perf_counter(), time.process_time()
            for _ in range(size):
                await c.read(PREFIX + b"/r")
            return start
    return _async_result(asyncio.run(main()), size)


def bare_reads(socket_path, size, use_asyncio):
    """The floor of aio_seq_read: ``size`` READs over a raw socket with no
    library at all, blocking on recv() or awaiting a future an
    add_reader() callback completes (the least any asyncio client does).
    Their ratio is what asyncio itself costs a sequential client."""
    import asyncio
    import socket
    import struct
    header = struct.Struct("<IIII")
    path = PREFIX + b"/r\x00"
    write = header.pack(11, 1, 0, len(path) + 5) + path + b"value"
    read = header.pack(2, 2, 0, len(path)) + path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    sock.sendall(write)
    sock.recv(4096)

    def blocking():
        for _ in range(size):
            sock.send(read)
            sock.recv(4096)  # one small reply: it comes whole
        return size

    async def awaiting():
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        waiting = []

        def readable():
            data = sock.recv(4096)
            if waiting and not waiting[0].done():
                waiting[0].set_result(data)
        loop.add_reader(sock.fileno(), readable)
        start = time.perf_counter(), time.process_time()
        for _ in range(size):
            waiting[:] = [loop.create_future()]
            sock.send(read)
            await waiting[0]
        loop.remove_reader(sock.fileno())
        return start

    try:
        if use_asyncio:
            return _async_result(asyncio.run(awaiting()), size)
        return timed(blocking)
    finally:
        sock.close()


def aio_concurrent_read(client, size, threads):
    """``threads`` coroutines reading through one pyxs.aio client
    (pyxs-seq: ``threads`` threads sharing one threaded client)."""
    if SEQUENTIAL:
        return threaded_read(client, size, threads)
    import asyncio

    import pyxs.aio
    client.write(PREFIX + b"/t", b"value")
    per_task = size // threads

    async def reader(c):
        for _ in range(per_task):
            await c.read(PREFIX + b"/t")

    async def main():
        async with pyxs.aio.Client(client.router.connection.path) as c:
            start = time.perf_counter(), time.process_time()
            await asyncio.gather(*(reader(c) for _ in range(threads)))
            return start
    return _async_result(asyncio.run(main()), per_task * threads)


def _async_result(start, operations):
    wall, cpu = start
    return {"operations": operations,
            "seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu}


WORKLOADS = {f.__name__: f for f in (seq_read, seq_write, threaded_read,
                                     walk, transaction, watch_events,
                                     big_list, idle, pending_memory,
                                     domain_start, read_many, aio_seq_read,
                                     aio_concurrent_read)}


def main(argv):
    impl, socket_path, name, size = argv[1], argv[2], argv[3], int(argv[4])
    threads = int(argv[5]) if len(argv) > 5 else 8
    if impl in ("bare-blocking", "bare-asyncio"):
        print(json.dumps(bare_reads(socket_path, size,
                                    impl == "bare-asyncio")))
        return
    if impl == "libxenstore":
        client = LibXenstore(socket_path)
        if name == "seq_read":
            result = seq_read(client, size, threads)
        elif name in ("domain_start", "read_many"):
            result = WORKLOADS[name](client, size, threads)
        elif name == "walk":
            populate = LibXenstore(socket_path)
            populate_tree(populate, size)
            result = timed(lambda: sum(1 for _ in client.walk(
                PREFIX + b"/tree")))
        else:
            raise SystemExit("libxenstore does not run %s" % name)
    else:
        global SEQUENTIAL
        SEQUENTIAL = impl == "pyxs-seq"
        import pyxs
        client = pyxs.Client(unix_socket_path=socket_path)
        client.connect()
        try:
            result = WORKLOADS[name](client, size, threads)
        finally:
            client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
