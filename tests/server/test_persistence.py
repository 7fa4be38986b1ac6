"""Crash-safe persistence: the journal, its compaction and damaged files.

The crash tests run the daemon as ``python -m pyxs.server --persist FILE``
in a separate process and ``kill -9`` it while writes are in flight; every
change whose reply arrived must be there after a restart.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import pytest

from pyxs._internal import HEADER, Op, PacketDecoder
from pyxs.server import XenStoreServer
from pyxs.server.persist import StoreFileError
from pyxs.testing import XenStoreDaemon

from .rawclient import RawClient


class _Writer(threading.Thread):
    """Pipelines WRITEs (or RMs) with a window, recording what was acked."""

    def __init__(self, path: str, name: bytes, acked: Dict[bytes, bytes],
                 lock: threading.Lock, count: int, window: int = 16) -> None:
        super().__init__(daemon=True)
        self.client = RawClient(path, timeout=30)
        self.label = name
        self.acked = acked
        self.lock = lock
        self.count = count
        self.window = window
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        sock = self.client.sock
        decoder = PacketDecoder()
        pending: Dict[int, bytes] = {}
        sent = 0
        try:
            while sent < self.count or pending:
                while sent < self.count and len(pending) < self.window:
                    sent += 1
                    key = b"/crash/%s/%d" % (self.label, sent)
                    payload = key + b"\x00" + b"value-%d" % sent
                    sock.sendall(HEADER.pack(Op.WRITE, sent, 0, len(payload))
                                 + payload)
                    pending[sent] = key
                data = sock.recv(65536)
                if not data:
                    return  # killed
                for packet in decoder.feed(data):
                    assert packet.op == Op.WRITE, packet
                    key = pending.pop(packet.rq_id)
                    with self.lock:
                        self.acked[key] = b"value-%d" % packet.rq_id
        except (ConnectionError, OSError):
            return
        except BaseException as error:  # reported by the test
            self.error = error


def _acked_transactions(path: str, stop: threading.Event,
                        done: List[int]) -> None:
    """Commits transactions of three writes each; records acked commits."""
    client = RawClient(path, timeout=30)
    try:
        number = 0
        while not stop.is_set():
            number += 1
            tx = client.call(Op.TRANSACTION_START, b"\x00")
            tx_id = int(tx[:-1])
            for part in range(3):
                client.call(Op.WRITE, b"/crash/tx/%d/%d\x00v" % (number, part),
                            tx_id)
            if client.call(Op.TRANSACTION_END, b"T\x00", tx_id) == b"OK\x00":
                done.append(number)
    except (EOFError, ConnectionError, OSError, ValueError):
        return
    finally:
        client.close()


@pytest.mark.parametrize("fsync", ["always", "periodic", "never"])
def test_kill_9_mid_write_loses_no_acknowledged_write(tmp_path,
                                                      fsync) -> None:
    store = str(tmp_path / "store")
    args = ["--persist", store, "--fsync", fsync]
    daemon = XenStoreDaemon("embedded", directory=str(tmp_path / "d"),
                            args=args)
    os.mkdir(daemon.directory)
    daemon.start()
    try:
        acked: Dict[bytes, bytes] = {}
        lock = threading.Lock()
        writers = [_Writer(daemon.socket_path, b"w%d" % index, acked, lock,
                           count=100000) for index in range(4)]
        stop = threading.Event()
        transactions: List[int] = []
        tx_thread = threading.Thread(
            target=_acked_transactions,
            args=(daemon.socket_path, stop, transactions), daemon=True)
        for thread in writers + [tx_thread]:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 3000 or len(transactions) < 5:
            assert time.monotonic() < deadline, (len(acked), transactions)
            assert all(w.is_alive() for w in writers), "a writer stopped"
            time.sleep(0.01)  # polling a counter, not synchronising
        daemon.kill()  # SIGKILL with writes in flight
        stop.set()
        for thread in writers + [tx_thread]:
            thread.join(30)
        assert not [w.error for w in writers if w.error]
        with lock:
            expected = dict(acked)
        assert len(expected) >= 3000
        daemon.start()
        reader = RawClient(daemon.socket_path, timeout=30)
        lost = [key for key, value in expected.items()
                if reader.call(Op.READ, key + b"\x00") != value]
        assert not lost, "%d of %d acknowledged writes lost, e.g. %r" % (
            len(lost), len(expected), lost[:3])
        for number in transactions:
            for part in range(3):
                assert reader.call(Op.READ, b"/crash/tx/%d/%d\x00"
                                   % (number, part)) == b"v"
        reader.close()
    finally:
        daemon.stop()


def _copy_files(store: str, where: str) -> str:
    """Copies the snapshot and journal as a crash would leave them."""
    os.mkdir(where)
    target = os.path.join(where, "store")
    shutil.copy(store, target)
    shutil.copy(store + ".journal", target + ".journal")
    return target


def _digest(*paths: str) -> List[str]:
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def _crashed_copy(tmp_path, batches: int = 3) -> str:
    """A store whose journal holds ``batches`` single-write batches (and a
    two-key transaction as the last batch), copied while the daemon runs."""
    store = str(tmp_path / "store")
    with XenStoreServer(persist=store) as server:
        client = RawClient(server.socketpair())
        for index in range(batches):
            assert client.call(Op.WRITE, b"/j/%d\x00v" % index) == b"OK\x00"
        tx_id = int(client.call(Op.TRANSACTION_START, b"\x00")[:-1])
        client.call(Op.WRITE, b"/j/tx-a\x00v", tx_id)
        client.call(Op.WRITE, b"/j/tx-b\x00v", tx_id)
        assert client.call(Op.TRANSACTION_END, b"T\x00", tx_id) == b"OK\x00"
        copy = _copy_files(store, str(tmp_path / "crashed"))
        client.close()
    return copy


def _read_all(store: str, keys: List[bytes]) -> Dict[bytes, bytes]:
    with XenStoreServer(persist=store) as server:
        client = RawClient(server.socketpair())
        found = {key: client.call(Op.READ, key + b"\x00") for key in keys}
        client.close()
    return found


_KEYS = [b"/j/0", b"/j/1", b"/j/2", b"/j/tx-a", b"/j/tx-b"]


def test_a_journal_replays_after_a_crash(tmp_path) -> None:
    copy = _crashed_copy(tmp_path)
    assert os.path.getsize(copy + ".journal") > 16
    assert set(_read_all(copy, _KEYS).values()) == {b"v"}


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_torn_last_record_is_ignored_whole(tmp_path, cut) -> None:
    copy = _crashed_copy(tmp_path)
    journal = copy + ".journal"
    with open(journal, "r+b") as handle:
        handle.truncate(os.path.getsize(journal) - cut)
    found = _read_all(copy, _KEYS)
    assert [found[k] for k in _KEYS[:3]] == [b"v"] * 3
    # the transaction was the last batch: all of it goes, not half
    assert found[b"/j/tx-a"] == found[b"/j/tx-b"] == b"ENOENT"


def test_a_last_record_failing_its_checksum_is_ignored(tmp_path) -> None:
    copy = _crashed_copy(tmp_path)
    journal = copy + ".journal"
    with open(journal, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    found = _read_all(copy, _KEYS)
    assert found[b"/j/2"] == b"v" and found[b"/j/tx-a"] == b"ENOENT"


def test_a_corrupt_journal_record_is_refused_and_left_untouched(
        tmp_path) -> None:
    copy = _crashed_copy(tmp_path)
    journal = copy + ".journal"
    with open(journal, "r+b") as handle:
        handle.seek(16 + 8 + 2)  # inside the first record's body
        byte = handle.read(1)
        handle.seek(16 + 8 + 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    before = _digest(copy, journal)
    with pytest.raises(StoreFileError) as info:
        XenStoreServer(persist=copy)
    message = str(info.value)
    assert journal in message and "byte 16" in message and "corrupt" in \
        message
    assert _digest(copy, journal) == before
    assert sorted(os.listdir(os.path.dirname(copy))) == ["store",
                                                          "store.journal"]


@pytest.mark.parametrize("damage", [b"{not json", b"", b'{"version": 99}',
                                    b'{"version": 2, "nodes": {}}'])
def test_a_corrupt_snapshot_is_refused_by_the_command_line(tmp_path,
                                                           damage) -> None:
    store = tmp_path / "store"
    store.write_bytes(damage)
    result = subprocess.run(
        [sys.executable, "-m", "pyxs.server", "--socket",
         str(tmp_path / "sock"), "--persist", str(store)],
        capture_output=True, timeout=30, env=_env())
    assert result.returncode == 2
    assert str(store).encode() in result.stderr
    assert b"refusing to start" in result.stderr
    assert b"Traceback" not in result.stderr
    assert store.read_bytes() == damage
    assert sorted(os.listdir(str(tmp_path))) == ["store"]


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    env["PYTHONPATH"] = top
    return env


def test_a_journal_without_its_snapshot_or_from_the_future_is_refused(
        tmp_path) -> None:
    copy = _crashed_copy(tmp_path)
    journal = copy + ".journal"
    with open(journal, "r+b") as handle:
        handle.seek(8)
        handle.write((99).to_bytes(8, "little"))  # a newer epoch
    before = _digest(copy, journal)
    with pytest.raises(StoreFileError, match="newer"):
        XenStoreServer(persist=copy)
    assert _digest(copy, journal) == before
    os.unlink(copy)
    with pytest.raises(StoreFileError, match="snapshot"):
        XenStoreServer(persist=copy)


def test_a_stale_journal_of_an_older_epoch_is_ignored(tmp_path) -> None:
    """A crash after a compaction renamed the new snapshot in and before
    the new journal replaced the old one leaves an older journal: all of
    it is in the snapshot."""
    copy = _crashed_copy(tmp_path)
    stale = open(copy + ".journal", "rb").read()
    assert set(_read_all(copy, _KEYS).values()) == {b"v"}  # compacts
    with open(copy + ".journal", "wb") as handle:
        handle.write(stale)
    assert set(_read_all(copy, _KEYS).values()) == {b"v"}


def test_the_journal_is_compacted_so_a_restart_reads_the_store_not_its_history(
        tmp_path) -> None:
    store = str(tmp_path / "store")
    with XenStoreServer(persist=store) as server:
        client = RawClient(server.socketpair())
        journal = server.journal
        assert journal is not None
        journal.compact_min = 64 * 1024  # the default is 1 MiB
        payload = b"/hot\x00" + b"x" * 1000
        limit = journal.compact_min + 2000  # plus the record just written
        for _ in range(1500):  # 1.5 MB of history for a 1 kB store
            # one write per batch: a batch journals a path once
            assert client.call(Op.WRITE, payload) == b"OK\x00"
            assert os.path.getsize(store + ".journal") <= limit
        assert journal.compactions >= 20
        client.close()
    assert os.path.getsize(store) < 10000
    assert os.path.getsize(store + ".journal") == 16  # compacted at stop
    assert _read_all(store, [b"/hot"]) == {b"/hot": b"x" * 1000}


@pytest.mark.parametrize("policy, expect", [("always", "each"),
                                            ("never", "none")])
def test_fsync_policy(tmp_path, monkeypatch, policy, expect) -> None:
    from pyxs.server import persist

    synced: List[int] = []
    real = os.fsync
    monkeypatch.setattr(persist.os, "fsync",
                        lambda fd: (synced.append(fd), real(fd)))
    with XenStoreServer(persist=str(tmp_path / "store"),
                        fsync=policy) as server:
        client = RawClient(server.socketpair())
        synced.clear()
        for index in range(20):
            client.call(Op.WRITE, b"/f/%d\x00v" % index)
        count = len(synced)
        client.close()
    assert count >= 20 if expect == "each" else count == 0


def test_periodic_fsync_happens_within_its_interval(tmp_path,
                                                    monkeypatch) -> None:
    from pyxs.server import persist

    synced = threading.Event()
    real = os.fsync
    monkeypatch.setattr(persist.os, "fsync",
                        lambda fd: (synced.set(), real(fd)))
    with XenStoreServer(persist=str(tmp_path / "store"), fsync="periodic",
                        fsync_interval=0.05) as server:
        client = RawClient(server.socketpair())
        synced.clear()
        client.call(Op.WRITE, b"/p\x00v")
        assert synced.wait(10)
        client.sync()  # the loop went round once more: the sync is done
        assert server.journal is not None and \
            server.journal.timeout() is None  # nothing left unsynced
        client.close()


def test_bad_fsync_policy_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        XenStoreServer(persist=str(tmp_path / "s"), fsync="sometimes")
    assert not os.listdir(str(tmp_path))


def test_a_journal_that_cannot_be_written_stops_the_daemon_unacknowledged(
        tmp_path, monkeypatch) -> None:
    import errno

    from pyxs.server import persist

    store = str(tmp_path / "store")
    server = XenStoreServer(persist=store).start()
    client = RawClient(server.socketpair())
    watcher = RawClient(server.socketpair())
    watcher.call(Op.WATCH, b"/after\x00t\x00")
    watcher.take_events()
    assert client.call(Op.WRITE, b"/before\x00v") == b"OK\x00"
    real = os.write
    journal = server.journal
    assert journal is not None

    def full_disk(fd: int, data: bytes) -> int:
        if fd == journal._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(persist.os, "write", full_disk)
    rq_id = client.send(Op.WRITE, b"/after\x00v")
    with pytest.raises(EOFError):
        client.reply(rq_id)  # closed, never "OK"
    with pytest.raises(EOFError):
        watcher.wait_event()  # no event for the unjournaled change either
    server.stop()
    assert isinstance(server.journal_error, OSError)
    monkeypatch.undo()
    assert _read_all(store, [b"/before", b"/after"]) == {
        b"/before": b"v", b"/after": b"ENOENT"}


def test_leftovers_of_a_crash_mid_compaction_are_removed(tmp_path) -> None:
    copy = _crashed_copy(tmp_path)
    directory = os.path.dirname(copy)
    for name in (".store.tmp-abc", ".store.journal.tmp-def"):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write("half a snapshot")
    with open(os.path.join(directory, ".other.tmp-x"), "w") as handle:
        handle.write("not ours")
    assert set(_read_all(copy, _KEYS).values()) == {b"v"}
    assert sorted(os.listdir(directory)) == [".other.tmp-x", "store",
                                             "store.journal"]


def test_permissions_and_removals_replay_from_the_journal(tmp_path) -> None:
    store = str(tmp_path / "store")
    with XenStoreServer(persist=store) as server:
        client = RawClient(server.socketpair())
        client.call(Op.WRITE, b"/r/a/b\x00v")
        client.call(Op.WRITE, b"/r/gone/x\x00v")
        client.call(Op.SET_PERMS, b"/r/a\x00n3\x00r4\x00")
        client.call(Op.SET_PERMS, b"@releaseDomain\x00n0\x00r3\x00")
        client.call(Op.RM, b"/r/gone\x00")
        copy = _copy_files(store, str(tmp_path / "crashed"))
        client.close()
    assert os.path.getsize(copy + ".journal") > 16  # replayed, not loaded
    with XenStoreServer(persist=copy) as server:
        client = RawClient(server.socketpair())
        assert client.call(Op.GET_PERMS, b"/r/a\x00") == b"n3\x00r4\x00"
        assert client.call(Op.READ, b"/r/a/b\x00") == b"v"
        assert client.call(Op.DIRECTORY, b"/r\x00") == b"a\x00"
        assert client.call(Op.READ, b"/r/gone/x\x00") == b"ENOENT"
        assert server.core.store.special_perms[b"@releaseDomain"][1].domid \
            == 3
        assert server.core.store.owned.get(3) == 1  # /r/a only
        client.close()
