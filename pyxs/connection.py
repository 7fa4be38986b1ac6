"""Connections move whole XenStore packets over a Unix socket or XenBus.

A connection knows nothing of requests or replies: it opens a file
descriptor, writes bytes completely and hands back the packets it reads.
"""

import errno
import functools
import os
import select
import socket
import stat
import time
import warnings
from collections import deque
from typing import Callable, Deque, List, Optional, Union

from ._internal import HEADER, PAYLOAD_MAX, Op, Packet, PacketDecoder
from .exceptions import ConnectionError, TimeoutError

__all__ = ["FileDescriptorConnection", "UnixSocketConnection",
           "XenBusConnection", "default_socket_path", "default_xenbus_path"]

_READ_SIZE = 65536
Buffer = Union[bytes, memoryview]
_XENBUS_WRITE_MAX = 4096  # the xenbus device refuses longer writes (E2BIG)
# oxenstored (4.17) answers DIRECTORY on a socket with the whole child list,
# however long (and has no DIRECTORY_PART): accept such replies.
_OVERSIZE_OPS = (Op.DIRECTORY,)


def default_socket_path() -> str:
    """Where the daemon's socket is, found as libxenstore finds it."""
    path = os.environ.get("XENSTORED_PATH")
    if path:
        return path
    rundir = os.environ.get("XENSTORED_RUNDIR")
    if rundir:
        return os.path.join(rundir, "socket")
    return "/var/run/xenstored/socket"


def default_xenbus_path() -> str:
    """The XenBus device: ``/dev/xen/xenbus``, else the old ``/proc`` one."""
    for path in ("/dev/xen/xenbus", "/proc/xen/xenbus"):
        if os.path.exists(path):
            return path
    return "/dev/xen/xenbus"


class FileDescriptorConnection:
    """Common logic of connections backed by one file descriptor."""

    #: The socket or device this connection opens, as given or found.
    path: str
    fd: Optional[int] = None
    #: Largest request payload this kind of connection can carry.
    payload_max = PAYLOAD_MAX

    def __init__(self) -> None:
        self._decoder = PacketDecoder(_OVERSIZE_OPS)
        self._unread: Deque[Packet] = deque()  # read by recv(), not returned
        # Bytes read but not yet decoded; b"" marks the end of the stream.
        self._chunks: Deque[bytes] = deque()

    @property
    def is_connected(self) -> bool:
        """True while the descriptor is open."""
        return self.fd is not None

    def fileno(self) -> int:
        """The descriptor, for ``select``; raises if not connected."""
        if self.fd is None:
            raise ConnectionError("not connected to %s" % self.path)
        return self.fd

    def connect(self, timeout: Optional[float] = None) -> None:
        """Opens the connection; does nothing if it is open.

        :param timeout: seconds to wait for a daemon that does not accept
            (stopped, or its backlog full); ``None`` waits forever.
        """
        raise NotImplementedError

    def _forget_buffered(self) -> None:
        """Drops bytes and packets read from the closed descriptor."""
        self._decoder = PacketDecoder(_OVERSIZE_OPS)
        self._unread.clear()
        self._chunks.clear()

    def close(self) -> None:
        """Closes the connection; safe to call more than once."""
        fd, self.fd = self.fd, None
        self._forget_buffered()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _write(self, data: Buffer) -> int:
        """Writes what it can of ``data`` (blocking); returns the count."""
        return os.write(self.fileno(), data)

    def writer(self) -> Callable[[Buffer], int]:
        """The fastest callable doing ``_write()`` on this connection,
        for a caller that writes many times (:mod:`pyxs.aio`); it fails
        with OSError once the connection is closed."""
        return self._write

    def _write_nowait(self, data: Buffer) -> int:
        """Writes what it can of ``data`` without blocking; returns the
        count, 0 when the peer takes nothing now."""
        fd = self.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not poller.poll(0):
            return 0
        return os.write(fd, data)

    #: True when :meth:`wake_reader` wakes a blocked read, so a reader
    #: needs no poll() to notice the connection closing.
    read_wakes_on_close = False

    def wake_reader(self) -> None:
        """Makes a read blocked on this connection return, if possible."""

    def _reader(self) -> Callable[[int], bytes]:
        """A C-level callable reading up to n bytes (see :meth:`fill`)."""
        return functools.partial(os.read, self.fileno())

    #: Bytes of the last send_bytes() call left unwritten when it raised:
    #: 0 means the data went out whole (only the caller was interrupted).
    unsent = 0

    def send_bytes(self, data: bytes,
                   deadline: Optional[float] = None) -> None:
        """Writes ``data`` completely, however many writes it takes.

        :param deadline: a :func:`time.monotonic` time after which
            :class:`~pyxs.exceptions.TimeoutError` is raised instead;
            :attr:`unsent` then tells how much was left.
        """
        view: Buffer = data
        try:
            if deadline is None:
                written = self._write(data)  # usually all of it
                if written == len(data):
                    view = b""
                    return
                view = memoryview(data)[written:]
                while view:
                    view = view[self._write(view):]
            else:
                while view:
                    written = self._write_nowait(view)
                    if written:
                        view = memoryview(view)[written:]
                    elif not self._wait_writable(deadline):
                        raise TimeoutError(
                            "writing to %s: the peer took %d of %d bytes "
                            "in time" % (self.path, len(data) - len(view),
                                         len(data)))
        except OSError as exc:
            raise write_failure(self.path, exc) from exc
        finally:
            self.unsent = len(view)

    def _wait_writable(self, deadline: float) -> bool:
        """Waits until the descriptor takes bytes; False at the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        poller = select.poll()
        poller.register(self.fileno(), select.POLLOUT)
        return bool(poller.poll(int(left * 1000 + 0.999)))

    def send(self, packet: Packet) -> None:
        """Writes one packet."""
        self.send_bytes(bytes(packet))

    @property
    def has_unparsed(self) -> bool:
        """True when :meth:`fill` read bytes :meth:`parse` has not taken."""
        return bool(self._chunks)

    def fill(self) -> None:
        """Reads once (blocking) and keeps the bytes for :meth:`parse`.

        The read and the store happen in one C-level call, so a signal
        handler that raises (Ctrl-C) either interrupts the read before any
        byte was taken, or runs after the bytes were stored: nothing read
        is ever lost.
        """
        try:
            self._chunks.extend(map(self._reader(), (_READ_SIZE,)))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise ConnectionError("reading from %s failed: %s"
                                  % (self.path, exc.strerror)) from exc

    def parse(self) -> List[Packet]:
        """Decodes what :meth:`fill` read; returns the packets now complete.

        The list may be empty when only part of a packet arrived. Raises
        :class:`ConnectionError` when the peer closed the connection.
        """
        packets: List[Packet] = []
        chunks = self._chunks
        while chunks:
            data = chunks[0]
            if not data:
                pending = self._decoder.pending
                raise ConnectionError(
                    "%s closed the connection%s" % (
                        self.path, " in the middle of a packet (%d bytes "
                        "received)" % pending if pending else ""))
            packets.extend(self._decoder.feed(data))
            chunks.popleft()
        return packets

    def recv_packets(self) -> List[Packet]:
        """Reads once (blocking) and returns the packets now complete."""
        if not self._chunks:
            self.fill()
        return self.parse()

    def recv(self) -> Packet:
        """Reads until one whole packet has arrived and returns it."""
        while not self._unread:
            self._unread.extend(self.recv_packets())
        return self._unread.popleft()

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, self.path)


def write_failure(path: str, exc: OSError) -> ConnectionError:
    """The error for a write to the connection at ``path`` that failed."""
    return ConnectionError("writing to %s failed: %s" % (path, exc.strerror))


def connect_failure(path: str, exc: OSError) -> ConnectionError:
    """The error for a socket at ``path`` that refused to connect."""
    hint = ""
    if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
        hint = " (is xenstored running? XENSTORED_PATH selects another " \
               "socket)"
    return ConnectionError("cannot connect to XenStore at %s: %s%s"
                           % (path, exc.strerror or exc, hint))


def connection_for(unix_socket_path: Optional[str] = None,
                   xen_bus_path: Optional[str] = None
                   ) -> "FileDescriptorConnection":
    """The connection a client's arguments name: the Unix socket, unless
    only ``xen_bus_path`` is given (found as libxenstore finds it when
    neither is)."""
    if unix_socket_path or not xen_bus_path:
        return UnixSocketConnection(unix_socket_path)
    return XenBusConnection(xen_bus_path)


def _connect_within(sock: socket.socket, path: str, timeout: float) -> None:
    """Connects a Unix socket, giving up after ``timeout`` seconds.

    A Unix socket whose listener does not accept (a stopped daemon, a full
    backlog) refuses a non-blocking connect with EAGAIN and offers nothing
    to wait on, so retry with a growing pause until the deadline.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    sock.setblocking(False)
    while True:
        try:
            sock.connect(path)
            break
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("cannot connect to XenStore at %s: no "
                                   "answer within %g s" % (path, timeout)) \
                    from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
    sock.setblocking(True)


class UnixSocketConnection(FileDescriptorConnection):
    """XenStore connection through the daemon's Unix domain socket.

    :param path: the socket; found from ``XENSTORED_PATH``,
        ``XENSTORED_RUNDIR`` or the default ``/var/run/xenstored/socket``
        when not given.
    """

    def __init__(self, path: Optional[str] = None,
                 socket_timeout: Optional[float] = None) -> None:
        super().__init__()
        self.path = path or default_socket_path()
        self._socket: Optional[socket.socket] = None
        #: pyxs 0.3's keyword: now the connect timeout when connect() is
        #: given none (a reply's timeout is Client(timeout=...)).
        self.socket_timeout = socket_timeout
        if socket_timeout is not None:
            warnings.warn("UnixSocketConnection(socket_timeout=...) is pyxs "
                          "0.3's; use Client(timeout=...)",
                          DeprecationWarning, stacklevel=2)

    def create_transport(self) -> "_UnixSocketTransport":
        """A new socket to :attr:`~FileDescriptorConnection.path` (pyxs
        0.4's transport API)."""
        return _UnixSocketTransport(self.path)

    @classmethod
    def from_socket(cls, sock: socket.socket,
                    name: str = "<socket>") -> "UnixSocketConnection":
        """A connection over an already connected stream socket, e.g. one
        end of a socketpair served by :class:`pyxs.server.XenStoreServer`."""
        connection = cls(name)
        connection._socket = sock
        connection.fd = sock.fileno()
        return connection

    def connect(self, timeout: Optional[float] = None) -> None:
        if self.fd is not None:
            return
        if timeout is None:
            timeout = self.socket_timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if timeout is None:
                sock.connect(self.path)
            else:
                _connect_within(sock, self.path, timeout)
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise connect_failure(self.path, exc) from exc
        self._socket = sock
        self.fd = sock.fileno()

    def close(self) -> None:
        sock, self._socket = self._socket, None
        self.fd = None
        self._forget_buffered()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _connected_socket(self) -> socket.socket:
        sock = self._socket
        if sock is None:  # closed, maybe by another thread meanwhile
            raise ConnectionError("not connected to %s" % self.path)
        return sock

    def _write(self, data: Buffer) -> int:
        return self._connected_socket().send(data)

    def writer(self) -> Callable[[Buffer], int]:
        return self._connected_socket().send

    def send_bytes(self, data: bytes,
                   deadline: Optional[float] = None) -> None:
        # The common case in one step: no deadline, one send takes it all.
        sock = self._socket
        if deadline is None and sock is not None:
            self.unsent = len(data)  # until known to be written
            try:
                written = sock.send(data)
            except OSError as exc:
                raise write_failure(self.path, exc) from exc
            if written == len(data):
                self.unsent = 0
                return
            data = data[written:]  # the rest the general way
        super().send_bytes(data, deadline)

    def _write_nowait(self, data: Buffer) -> int:
        try:
            return self._connected_socket().send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    read_wakes_on_close = True

    def wake_reader(self) -> None:
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _reader(self) -> Callable[[int], bytes]:
        sock = self._socket
        if sock is None:  # closed, maybe by another thread meanwhile
            raise ConnectionError("not connected to %s" % self.path)
        return sock.recv

    def fileno(self) -> int:
        return self._connected_socket().fileno()


class XenBusConnection(FileDescriptorConnection):
    """XenStore connection through the XenBus device of a Xen guest or dom0.

    :param path: the device; ``/dev/xen/xenbus`` (or ``/proc/xen/xenbus`` on
        old kernels) when not given. Any character device or pseudo-terminal
        that relays the protocol works too.
    """

    #: Linux buffers a whole request, header included, in 4096 bytes.
    payload_max = PAYLOAD_MAX - HEADER.size

    def __init__(self, path: Optional[str] = None) -> None:
        super().__init__()
        self.path = path or default_xenbus_path()

    def create_transport(self) -> "_XenBusTransport":
        """A new descriptor of :attr:`~FileDescriptorConnection.path`
        (pyxs 0.4's transport API)."""
        return _XenBusTransport(self.path)

    def connect(self, timeout: Optional[float] = None) -> None:
        if self.fd is not None:
            return
        try:  # opening a device does not block: no timeout needed
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConnectionError("cannot open XenBus device %s: %s"
                                  % (self.path, exc.strerror)) from exc
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConnectionError("cannot open XenBus device %s: it is a "
                                  "directory" % self.path)
        self.fd = fd

    def send_bytes(self, data: bytes,
                   deadline: Optional[float] = None) -> None:
        """Writes each packet of ``data`` with a write of its own: Linux's
        xenbus device takes one message per write and drops the rest."""
        offset = 0
        size = 0
        try:
            while offset < len(data):
                size = HEADER.size + HEADER.unpack_from(data, offset)[3]
                super().send_bytes(data[offset:offset + size], deadline)
                offset += size
        finally:
            if offset < len(data):  # the packet at offset failed
                self.unsent = len(data) - offset - size + self.unsent

    def _write(self, data: Buffer) -> int:
        return os.write(self.fileno(), data[:_XENBUS_WRITE_MAX])

    def _write_nowait(self, data: Buffer) -> int:
        return super()._write_nowait(data[:_XENBUS_WRITE_MAX])

# -- pyxs 0.4's names -------------------------------------------------------

#: pyxs 0.4's name of the connections' base class.
PacketConnection = FileDescriptorConnection
_get_unix_socket_path = default_socket_path  # pyxs 0.4's private names
_get_xenbus_path = default_xenbus_path


class _UnixSocketTransport:
    """pyxs 0.4's byte transport over the daemon's Unix socket: connects on
    creation; ``fileno``, ``recv``, ``send`` (all of it) and ``close``.

    :raises pyxs.exceptions.ConnectionError: if ``path`` cannot be
        connected to.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise ConnectionError("cannot connect to XenStore at %s: %s"
                                  % (path, exc.strerror or exc)) from exc

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class _XenBusTransport:
    """pyxs 0.4's byte transport over the XenBus device: opens it on
    creation; ``fileno``, ``recv``, ``send`` (all of it) and ``close``.

    :raises pyxs.exceptions.ConnectionError: if ``path`` cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConnectionError("cannot open XenBus device %s: %s"
                                  % (path, exc.strerror)) from exc

    def fileno(self) -> int:
        return self.fd

    def recv(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view[:_XENBUS_WRITE_MAX]):]

    def close(self) -> None:
        os.close(self.fd)
