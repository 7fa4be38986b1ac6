"""The socket side of the embedded daemon: one thread, one selector.

Every socket is non-blocking; the loop sleeps in ``select`` until a socket
is ready or another thread wakes it through a socketpair (to stop, or to
hand over a new in-process connection).
"""

import logging
import os
import selectors
import socket
import threading
from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from .._internal import PacketDecoder
from ..exceptions import UnexpectedPacket
from . import persist as _persist
from .core import Core
from .quotas import DEFAULT_QUOTAS, Quotas
from .session import Session

__all__ = ["XenStoreServer"]

log = logging.getLogger("pyxs.server")

_RECV_SIZE = 65536
#: Stop reading from a client while this much output waits for it.
_BACKLOG_LIMIT = 1 << 20


class _Client:
    """A connected socket with its decoder and protocol session."""

    __slots__ = ("sock", "session", "decoder", "reading")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self.decoder = PacketDecoder()
        self.reading = True


class XenStoreServer:
    """An embedded XenStore daemon serving Unix-socket clients.

    :param socket_path: where to listen as dom0 (privileged); None serves
        only :meth:`socketpair` and :meth:`add_listener` connections.
    :param persist: a file the tree is loaded from at start and saved to
        (atomically) at stop.
    :param quotas: limits for unprivileged domains.
    :param xen: the Xen release whose protocol to speak: ``"4.22"`` (the
        default: ops 23-26, watch depth) or ``"4.17"`` (neither).
    """

    def __init__(self, socket_path: Optional[str] = None,
                 persist: Optional[str] = None,
                 quotas: Quotas = DEFAULT_QUOTAS, xen: str = "4.22") -> None:
        self.socket_path = socket_path
        self.persist = persist
        self.core = Core(quotas=quotas, xen=xen)
        if persist and os.path.exists(persist):
            _persist.load(self.core.store, persist)
        self._selector = selectors.DefaultSelector()
        self._listeners: Dict[socket.socket, Tuple[int, str]] = {}
        self._clients: Dict[socket.socket, _Client] = {}
        self._by_session: Dict[Session, _Client] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming: Deque[Tuple[socket.socket, int]] = deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._serving = False
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        if socket_path is not None:
            self.add_listener(socket_path, 0)

    # -- public API -----------------------------------------------------

    def add_listener(self, path: str, domid: int = 0) -> None:
        """Listens on another Unix socket whose clients act as ``domid``."""
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        listener.setblocking(False)
        self.core.domains.setdefault(domid, self.core.store.generation)
        with self._lock:
            self._listeners[listener] = (domid, path)
            self._selector.register(listener, selectors.EVENT_READ, None)
        self._wake()

    def socketpair(self, domid: int = 0) -> socket.socket:
        """A connected in-process client socket acting as ``domid``."""
        ours, theirs = socket.socketpair()
        with self._lock:
            self._incoming.append((ours, domid))
        self._wake()
        return theirs

    def client(self, domid: int = 0, **kwargs: Any) -> Any:
        """A new :class:`pyxs.Client` talking to this server in-process
        (over a socketpair, no socket file), acting as ``domid``."""
        from ..client import Client, Router
        from ..connection import UnixSocketConnection
        connection = UnixSocketConnection.from_socket(
            self.socketpair(domid), "<in-process dom%d>" % domid)
        return Client(router=Router(connection), **kwargs)

    def start(self) -> "XenStoreServer":
        """Serves in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, name="pyxs-server", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Runs the event loop in this thread until :meth:`stop`."""
        self._serving = True
        try:
            while not self._stopping:
                for key, mask in self._selector.select():
                    self._dispatch(key.fileobj, mask)
                self._flush_dirty()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Stops serving, closes every socket and removes socket files."""
        self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None
        elif not self._serving:
            self._shutdown()  # never started: nothing else will

    def __enter__(self) -> "XenStoreServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- the loop -------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except (BlockingIOError, OSError):
            pass  # already pending, or shut down

    def _dispatch(self, fileobj: Any, mask: int) -> None:
        if fileobj is self._wake_r:
            self._drain_wake()
        elif fileobj in self._listeners:
            self._accept(fileobj)
        else:
            client = self._clients.get(fileobj)
            if client is None:
                return
            if mask & selectors.EVENT_READ:
                self._read(client)
            if mask & selectors.EVENT_WRITE and client.sock in self._clients:
                self._write(client)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            with self._lock:
                if not self._incoming:
                    break
                sock, domid = self._incoming.popleft()
            self._add_client(sock, domid)

    def _accept(self, listener: socket.socket) -> None:
        domid = self._listeners[listener][0]
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("accept failed: %s", error)
                return
            self._add_client(sock, domid)

    def _add_client(self, sock: socket.socket, domid: int) -> None:
        sock.setblocking(False)
        client = _Client(sock, self.core.open_session(domid))
        self._clients[sock] = client
        self._by_session[client.session] = client
        self._selector.register(sock, selectors.EVENT_READ, None)
        log.debug("new connection as domain %d", domid)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            packets = client.decoder.feed(data)
        except UnexpectedPacket as error:
            log.info("dropping client: %s", error)
            self._drop(client)
            return
        for packet in packets:
            self.core.handle(client.session, packet)

    def _write(self, client: _Client) -> None:
        outbox = client.session.outbox
        while outbox:
            try:
                sent = client.sock.send(outbox.head())
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            outbox.advance(sent)
        if client.session.closing and not outbox:
            self._drop(client)
            return
        self._update_interest(client)

    def _update_interest(self, client: _Client) -> None:
        outbox = client.session.outbox
        client.reading = outbox.size < _BACKLOG_LIMIT \
            and not client.session.closing
        events = (selectors.EVENT_READ if client.reading else 0) | \
            (selectors.EVENT_WRITE if outbox else 0)
        if not events:
            events = selectors.EVENT_READ  # still notice a hang-up
        self._selector.modify(client.sock, events, None)

    def _flush_dirty(self) -> None:
        core = self.core
        while core.dirty:
            session = core.dirty.pop()
            client = self._by_session.get(session)
            if client is not None:
                self._write(client)

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        self._by_session.pop(client.session, None)
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
        self.core.close_session(client.session)

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients.values()):
            self._drop(client)
        for listener, (_, path) in list(self._listeners.items()):
            listener.close()
            try:
                os.unlink(path)
            except OSError:
                pass
        self._listeners.clear()
        with self._lock:
            for sock, _ in self._incoming:
                sock.close()
            self._incoming.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.persist:
            _persist.save(self.core.store, self.persist)

