"""Crash-safe persistence of the tree: a snapshot plus an append-only journal.

With ``persist=FILE`` the daemon keeps two files:

* ``FILE``, a snapshot: a JSON document of every node (value, permissions,
  children) and of the special watch paths' permissions, with the *epoch*
  of the journal that continues it;
* ``FILE.journal``, the journal: a 16-byte header (``PYXSJNL1`` and the
  epoch, uint64 little-endian), then records. A record is a uint32 length,
  the CRC-32 of its body and the body: every committed change one batch of
  requests made (``P`` a node's new state, ``D`` a removed node, ``S`` a
  special path's permissions), each path once with its final state.

Invariants:

* :meth:`Journal.flush` writes the batch before the daemon sends any reply
  of that batch, so a reply is only ever sent for a change the kernel
  already holds: ``kill -9`` of the daemon loses no acknowledged write. The
  fsync policy decides what survives a power loss: ``always`` (fsync
  before the replies go out), ``periodic`` (the default: at most
  ``fsync_interval`` seconds of acknowledged changes are exposed) or
  ``never``.
* A batch is one record, so a torn write loses a whole batch, never half
  of one: a transaction's commit is atomic on disk too.
* Compaction writes a snapshot of the next epoch (temporary file, fsync,
  rename) and only then a fresh journal of that epoch. A journal of an older
  epoch than its snapshot is therefore stale (all of it is in the snapshot)
  and is ignored; a newer one cannot happen and is refused. The journal is
  compacted when it outgrows ``max(1 MiB, 2 x snapshot)``, so a restart
  reads O(size of the store), not O(history).
* A damaged *last* record (short, or failing its checksum) is what a crash
  mid-write leaves: it is ignored. Damage anywhere else, an unreadable
  snapshot or a journal without its snapshot raise :class:`StoreFileError`
  before anything is written: the files are left exactly as they were.
"""

import base64
import json
import os
import struct
import tempfile
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .perms import Perms, format_perms, parse_perms
from .store import SPECIAL_PATHS, Node, Store

__all__ = ["save", "load", "dumps", "loads", "Journal", "StoreFileError",
           "FSYNC_POLICIES"]

_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_MAGIC = b"PYXSJNL1"
_JOURNAL_HEADER = struct.Struct("<8sQ")
_RECORD = struct.Struct("<II")
_LEN = struct.Struct("<I")
#: ``always``: fsync each batch before its replies; ``periodic``: at most
#: every ``fsync_interval`` seconds; ``never``: leave it to the kernel.
FSYNC_POLICIES = ("always", "periodic", "never")
_COMPACT_MIN = 1 << 20

_Tree = Dict[bytes, Node]
_Special = Dict[bytes, Perms]


class StoreFileError(ValueError):
    """A store file that cannot be loaded; it is left untouched."""


def _perms_out(perms: Perms) -> List[str]:
    return [p.decode("ascii") for p in format_perms(perms).split(b"\x00")[:-1]]


def _perms_in(items: List[str]) -> Perms:
    return parse_perms([item.encode("ascii") for item in items])


def _document(store: Store, epoch: int) -> Dict[str, Any]:
    nodes = {}
    for path, node in store.nodes.items():
        nodes[path.decode("ascii")] = {
            "value": base64.b64encode(node.value).decode("ascii"),
            "perms": _perms_out(node.perms),
            "children": [name.decode("ascii") for name in node.children],
        }
    special = {path.decode("ascii"): _perms_out(perms)
               for path, perms in store.special_perms.items()}
    return {"version": _VERSION, "epoch": epoch, "nodes": nodes,
            "special": special}


def dumps(store: Store, epoch: int = 0) -> str:
    """The store as a JSON snapshot document."""
    return json.dumps(_document(store, epoch), indent=1, sort_keys=True)


def _parse(text: str) -> Tuple[_Tree, _Special, int]:
    """Nodes, special permissions and epoch of a snapshot document."""
    document = json.loads(text)
    if not isinstance(document, dict) or \
            document.get("version") not in _READABLE_VERSIONS:
        raise ValueError("unsupported store file version %r" % (
            document.get("version") if isinstance(document, dict)
            else None,))
    nodes: _Tree = {}
    for path, item in document["nodes"].items():
        nodes[path.encode("ascii")] = Node(
            base64.b64decode(item["value"], validate=True),
            _perms_in(item["perms"]),
            tuple(name.encode("ascii") for name in item["children"]))
    if b"/" not in nodes:
        raise ValueError("store file has no root node")
    special = {path.encode("ascii"): _perms_in(perms)
               for path, perms in document.get("special", {}).items()
               if path.encode("ascii") in SPECIAL_PATHS}
    epoch = document.get("epoch", 0)
    if not isinstance(epoch, int) or epoch < 0:
        raise ValueError("bad epoch %r" % (epoch,))
    return nodes, special, epoch


def loads(store: Store, text: str) -> None:
    """Replaces the store's tree with the one in a JSON snapshot."""
    nodes, special, _ = _parse(text)
    store.replace_tree(nodes, special)


def _replace_file(path: str, data: bytes, sync: bool) -> None:
    """Writes ``path`` atomically (temporary file, fsync, rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path),
                                         dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    if sync:
        _sync_directory(directory)


def _temporary_prefix(path: str) -> str:
    """Temporary files of ``path`` are ``.<name>.tmp-*`` next to it."""
    return ".%s.tmp-" % os.path.basename(path)


def _remove_leftovers(path: str) -> None:
    """Removes temporary files a crash mid-compaction left next to
    ``path`` (never the store files themselves)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    for name in os.listdir(directory):
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _sync_directory(directory: str) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def save(store: Store, path: str) -> None:
    """Writes a snapshot of the store to ``path`` atomically."""
    _replace_file(path, dumps(store).encode("ascii"), True)


def load(store: Store, path: str) -> None:
    """Loads the store from a snapshot, StoreFileError if unreadable."""
    with open(path, "rb") as source:
        data = source.read()
    try:
        loads(store, data.decode("ascii"))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StoreFileError("%s: not a pyxs store file (%s); refusing to "
                             "start, the file is left as it is"
                             % (path, error)) from None


# -- journal records ------------------------------------------------------

def _field(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def _encode_batch(log: Dict[bytes, Optional[Node]],
                  special: Dict[bytes, Perms]) -> bytes:
    parts = []
    for path, node in log.items():
        if node is None:
            parts.append(b"D" + _field(path))
        else:
            parts.append(b"P" + _field(path) + _field(node.value)
                         + _field(format_perms(node.perms))
                         + _field(b"\x00".join(node.children)))
    for path, perms in special.items():
        parts.append(b"S" + _field(path) + _field(format_perms(perms)))
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def field(self) -> bytes:
        (size,) = _LEN.unpack_from(self.data, self.offset)
        start = self.offset + _LEN.size
        if start + size > len(self.data):
            raise ValueError("field runs past the record")
        self.offset = start + size
        return self.data[start:self.offset]


def _perms_field(data: bytes) -> Perms:
    return parse_perms(data.split(b"\x00")[:-1])


def _apply_batch(body: bytes, nodes: _Tree, special: _Special) -> None:
    reader = _Reader(body)
    while reader.offset < len(body):
        kind = body[reader.offset:reader.offset + 1]
        reader.offset += 1
        path = reader.field()
        if kind == b"D":
            nodes.pop(path, None)
        elif kind == b"P":
            value = reader.field()
            perms = _perms_field(reader.field())
            names = reader.field()
            nodes[path] = Node(value, perms,
                               tuple(names.split(b"\x00")) if names else ())
        elif kind == b"S" and path in SPECIAL_PATHS:
            special[path] = _perms_field(reader.field())
        else:
            raise ValueError("unknown entry %r" % kind)


def _replay(path: str, data: bytes, nodes: _Tree, special: _Special) -> int:
    """Applies the records of a journal; returns the bytes of valid
    records. A damaged last record is ignored; other damage raises."""
    offset = _JOURNAL_HEADER.size
    end = len(data)
    while offset < end:
        if end - offset < _RECORD.size:
            break  # torn header of the last record
        size, crc = _RECORD.unpack_from(data, offset)
        start = offset + _RECORD.size
        if start + size > end:
            break  # torn body of the last record
        body = data[start:start + size]
        if zlib.crc32(body) != crc:
            if start + size == end:
                break  # the last record, half written
            raise StoreFileError(
                "%s: record at byte %d fails its checksum and more records "
                "follow: the journal is corrupt; refusing to start, the "
                "file is left as it is" % (path, offset))
        try:
            _apply_batch(body, nodes, special)
        except (ValueError, struct.error) as error:
            raise StoreFileError(
                "%s: record at byte %d is malformed (%s); refusing to start, "
                "the file is left as it is" % (path, offset, error)) from None
        offset = start + size
    return offset


class Journal:
    """The store's snapshot and journal files, kept current.

    Opening loads both into ``store`` (or starts empty if neither exists),
    then compacts them at once (which also drops a torn last record) and
    starts journaling the store's changes.

    :param fsync: one of :data:`FSYNC_POLICIES`.
    """

    def __init__(self, store: Store, path: str, fsync: str = "periodic",
                 fsync_interval: float = 1.0,
                 compact_min: int = _COMPACT_MIN) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError("fsync policy must be one of %s, not %r"
                             % (", ".join(FSYNC_POLICIES), fsync))
        self.store = store
        self.path = path
        self.journal_path = path + ".journal"
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.compact_min = compact_min
        self.epoch = self._load()
        _remove_leftovers(self.path)
        _remove_leftovers(self.journal_path)
        self._fd: Optional[int] = None
        self._size = 0
        self._snapshot_size = 0
        self._unsynced = False
        self._last_sync = time.monotonic()
        #: Batches written and compactions done, for tests and reports.
        self.records = 0
        self.compactions = 0
        self.compact()
        store.log = {}
        store.special_log = {}

    def _load(self) -> int:
        snapshot = os.path.exists(self.path)
        journal = os.path.exists(self.journal_path)
        if not snapshot:
            if journal:
                raise StoreFileError(
                    "%s exists but its snapshot %s does not; refusing to "
                    "start, the file is left as it is"
                    % (self.journal_path, self.path))
            return 0
        with open(self.path, "rb") as source:
            text = source.read()
        try:
            nodes, special, epoch = _parse(text.decode("ascii"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StoreFileError("%s: not a pyxs store file (%s); refusing "
                                 "to start, the file is left as it is"
                                 % (self.path, error)) from None
        if journal:
            with open(self.journal_path, "rb") as source:
                data = source.read()
            if len(data) >= _JOURNAL_HEADER.size:
                magic, journal_epoch = _JOURNAL_HEADER.unpack_from(data)
                if magic != _MAGIC:
                    raise StoreFileError(
                        "%s: not a pyxs journal; refusing to start, the file "
                        "is left as it is" % self.journal_path)
                if journal_epoch > epoch:
                    raise StoreFileError(
                        "%s: epoch %d is newer than its snapshot's (%d); "
                        "refusing to start, the files are left as they are"
                        % (self.journal_path, journal_epoch, epoch))
                if journal_epoch == epoch:
                    _replay(self.journal_path, data, nodes, special)
                # an older journal is stale: the snapshot holds all of it
        if b"/" not in nodes:
            raise StoreFileError("%s: the journal removes the root node; "
                                 "refusing to start" % self.journal_path)
        self.store.replace_tree(nodes, special)
        return epoch

    # -- writing ----------------------------------------------------------

    def flush(self) -> None:
        """Appends the store's pending changes as one record (before any
        reply for them is sent); compacts when the journal has grown."""
        store = self.store
        log, special = store.log, store.special_log
        if not log and not special:
            return
        body = _encode_batch(log or {}, special or {})
        store.log = {}
        store.special_log = {}
        self._append(_RECORD.pack(len(body), zlib.crc32(body)) + body)
        self.records += 1
        if self.fsync == "always":
            self._sync()
        else:
            self._unsynced = True
        if self._size > max(self.compact_min, 2 * self._snapshot_size):
            self.compact()

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
        self._unsynced = False
        self._last_sync = time.monotonic()

    def timeout(self) -> Optional[float]:
        """Seconds until :meth:`tick` has a periodic fsync to do, or None."""
        if self.fsync != "periodic" or not self._unsynced:
            return None
        return max(0.0, self._last_sync + self.fsync_interval
                   - time.monotonic())

    def tick(self) -> None:
        """Runs a periodic fsync when one is due."""
        timeout = self.timeout()
        if timeout is not None and timeout <= 0:
            self._sync()

    def compact(self) -> None:
        """Writes a snapshot of the next epoch, then an empty journal."""
        sync = self.fsync != "never"
        epoch = self.epoch + 1
        snapshot = dumps(self.store, epoch).encode("ascii")
        _replace_file(self.path, snapshot, sync)
        self.epoch = epoch
        self._snapshot_size = len(snapshot)
        directory = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(
            prefix=_temporary_prefix(self.journal_path), dir=directory)
        try:
            header = _JOURNAL_HEADER.pack(_MAGIC, epoch)
            os.write(handle, header)
            if sync:
                os.fsync(handle)
            os.replace(temporary, self.journal_path)
        except BaseException:
            os.close(handle)
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        if sync:
            _sync_directory(directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = handle
        self._size = len(header)
        self._unsynced = False
        self._last_sync = time.monotonic()
        self.compactions += 1

    def abandon(self) -> None:
        """Closes the journal as it is (after a write failed): the next
        start replays what reached it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.store.log = None
        self.store.special_log = None

    def close(self) -> None:
        """Flushes, compacts (so the next start reads one snapshot) and
        closes the journal."""
        if self._fd is None:
            return
        self.flush()
        self.compact()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self.store.log = None
        self.store.special_log = None
