"""The socket side of the embedded daemon: one thread, one selector.

Every socket is non-blocking; the loop sleeps in ``select`` until a socket
is ready or another thread wakes it through a socketpair (to stop, or to
hand over a new in-process connection).

Invariants:

* input is read with backpressure, as C xenstored does: requests are
  taken one at a time from a connection's buffer, and a connection is not
  read while its domain (unprivileged) has ``quotas.outstanding`` replies
  queued and unsent on all of its connections together, or while a
  privileged connection has ``_BACKLOG_LIMIT`` bytes queued; so a client
  that never reads its replies holds at most one read of input and a
  bounded number of replies, however much it sends;
* a connection is read only when its buffer holds no whole packet: at
  most ``_RECV_SIZE`` bytes of input wait per privileged connection,
  ``_GUEST_RECV_SIZE`` (one largest packet) per unprivileged one;
* with persistence, a batch's changes are in the journal
  (:meth:`pyxs.server.persist.Journal.flush`) before any reply of the
  batch can be written: the journal is flushed at the end of every
  batch and before any early write;
* malformed input or a failing request closes that connection only; the
  loop and every other connection go on;
* an unprivileged domain holds at most ``MAX_DOMAIN_CONNECTIONS``
  connections (a paused connection is not polled, so its hang-up is only
  seen once it is resumed: the cap keeps a stuck guest from piling up
  descriptors).
"""

import logging
import os
import selectors
import socket
import threading
from collections import deque
from typing import Any, Deque, Dict, Optional, Set, Tuple

from .core import Core
from .persist import Journal
from .quotas import DEFAULT_QUOTAS, Quotas
from .session import DomainUsage, Inbox, MalformedInput, Session

__all__ = ["XenStoreServer"]

log = logging.getLogger("pyxs.server")

_RECV_SIZE = 65536
#: Unprivileged connections read at most one whole packet at a time.
_GUEST_RECV_SIZE = 16 + 4096
#: Connections one unprivileged domain may hold at once (a guest has one
#: ring under Xen; here each connection costs a descriptor and buffers).
MAX_DOMAIN_CONNECTIONS = 64
#: Stop reading from a privileged client while this much output waits.
_BACKLOG_LIMIT = 1 << 20
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Client:
    """A connected socket with its input buffer and protocol session."""

    __slots__ = ("sock", "session", "inbox", "events", "paused")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self.inbox = Inbox()
        #: The selector events registered for the socket (0: none).
        self.events = 0
        #: Set while the connection is not read because of a quota.
        self.paused = False


class XenStoreServer:
    """An embedded XenStore daemon serving Unix-socket clients.

    :param socket_path: where to listen as dom0 (privileged); None serves
        only :meth:`socketpair` and :meth:`add_listener` connections.
    :param persist: a snapshot file the tree is loaded from at start; every
        change then goes to its journal (``persist + ".journal"``) before
        its reply is sent, and the two are compacted into a new snapshot
        as the journal grows and at stop (see :mod:`pyxs.server.persist`).
        A damaged file raises :exc:`~pyxs.server.persist.StoreFileError`
        and is left untouched.
    :param fsync: with ``persist``, when the journal is fsynced: ``always``
        (before the replies of each batch), ``periodic`` (the default, at
        most every ``fsync_interval`` seconds) or ``never``. A ``kill -9``
        of the daemon loses no acknowledged change under any policy; the
        policy decides what a power loss may take.
    :param quotas: limits for unprivileged domains, per domain over all of
        its connections.
    """

    def __init__(self, socket_path: Optional[str] = None,
                 persist: Optional[str] = None,
                 quotas: Quotas = DEFAULT_QUOTAS,
                 fsync: str = "periodic",
                 fsync_interval: float = 1.0) -> None:
        self.socket_path = socket_path
        self.persist = persist
        self.core = Core(quotas=quotas)
        self.journal: Optional[Journal] = None
        if persist:
            self.journal = Journal(self.core.store, persist, fsync=fsync,
                                   fsync_interval=fsync_interval)
        self._selector = selectors.DefaultSelector()
        self._listeners: Dict[socket.socket, Tuple[int, str]] = {}
        self._clients: Dict[socket.socket, _Client] = {}
        self._by_session: Dict[Session, _Client] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming: Deque[Tuple[socket.socket, int]] = deque()
        #: Connections not read for now because of a quota.
        self._paused: Set[_Client] = set()
        #: Listeners not polled since accept() failed.
        self._deaf: Set[socket.socket] = set()
        #: Set when the journal could not be written: nothing more is
        #: sent, and the daemon stops.
        self.journal_error: Optional[OSError] = None
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
                for key, mask in self._selector.select(self._timeout()):
                    self._dispatch(key.fileobj, mask)
                self._flush_dirty()
                if self._paused and self._resume():
                    self._flush_dirty()
                if self.journal is not None and self.journal_error is None:
                    try:
                        self.journal.tick()
                    except OSError as error:
                        log.critical("cannot fsync the journal %s: %s; "
                                     "stopping", self.journal.journal_path,
                                     error)
                        self.journal_error = error
                        self._stopping = True
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
                # Out of descriptors (EMFILE, ENFILE...): stop listening
                # until a connection closes, instead of spinning on a
                # listener that stays readable.
                log.warning("accept failed, not accepting until a "
                            "connection closes: %s", error)
                self._selector.unregister(listener)
                self._deaf.add(listener)
                return
            self._add_client(sock, domid)

    def _add_client(self, sock: socket.socket, domid: int) -> None:
        usage = self.core.usage.get(domid)
        if domid != 0 and usage is not None and \
                len(usage.sessions) >= MAX_DOMAIN_CONNECTIONS:
            log.info("domain %d already has %d connections: closing a new "
                     "one", domid, len(usage.sessions))
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock, self.core.open_session(domid))
        self._clients[sock] = client
        self._by_session[client.session] = client
        self._set_events(client, _READ)
        log.debug("new connection as domain %d", domid)

    def _timeout(self) -> Optional[float]:
        for client in self._paused:
            if not self._blocked(client):
                return 0.0  # a paused client may go on at once
        return self.journal.timeout() if self.journal is not None else None

    def _blocked(self, client: _Client) -> bool:
        """Whether the client's requests must wait for replies to drain."""
        session = client.session
        if session.domid == 0:  # privileged (Who.privileged)
            return session.outbox.size >= _BACKLOG_LIMIT
        limit = self.core.quotas.outstanding
        return bool(limit) and session.usage.outstanding >= limit

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(
                _RECV_SIZE if client.session.domid == 0
                else _GUEST_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbox.feed(data)
        self._process(client)

    def _process(self, client: _Client) -> None:
        """Runs the client's buffered requests while its quota allows."""
        session = client.session
        inbox = client.inbox
        handle = self.core.handle
        try:
            while not session.closing:
                if self._blocked(client):
                    # Replies may leave at once; the journal goes first.
                    self._flush_journal()
                    self._write_domain(session.usage)
                    if client.sock not in self._clients:
                        return
                    if self._blocked(client):
                        client.paused = True
                        self._paused.add(client)
                        break
                try:
                    packet = inbox.next()
                except MalformedInput as error:
                    log.info("dropping a connection of domain %d: %s",
                             session.domid, error)
                    self._drop(client)
                    return
                if packet is None:
                    break
                try:
                    handle(session, packet)
                except Exception:  # a bug must not take the daemon down
                    log.exception("request %r of domain %d failed; closing "
                                  "that connection", packet, session.domid)
                    self._drop(client)
                    return
        finally:
            self._flush_journal()
        if session.outbox:
            self.core.dirty.discard(session)
            self._write(client)  # at once: one selector update, not two
        else:
            self._update_interest(client)

    def _resume(self) -> bool:
        """Goes on with paused clients whose quota allows; True if any."""
        resumed = False
        for client in list(self._paused):
            if client.sock not in self._clients:
                self._paused.discard(client)
            elif not self._blocked(client):
                self._paused.discard(client)
                client.paused = False
                self._process(client)
                resumed = True
        return resumed

    def _flush_journal(self) -> None:
        if self.journal is None or self.journal_error is not None:
            return
        try:
            self.journal.flush()
        except OSError as error:
            # Fail-stop: a reply for a change that is not in the journal
            # would be a lie, so none is sent any more.
            log.critical("cannot write the journal %s: %s; stopping without "
                         "sending the replies of unjournaled changes",
                         self.journal.journal_path, error)
            self.journal_error = error
            self._stopping = True

    def _write_domain(self, usage: DomainUsage) -> None:
        for session in list(usage.sessions):
            client = self._by_session.get(session)
            if client is not None and client.session.outbox:
                self._write(client)

    def _write(self, client: _Client) -> None:
        if self.journal_error is not None:
            return
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
        if client.sock not in self._clients:
            return
        session = client.session
        reading = not (session.closing or client.paused
                       or client.inbox.ready())
        self._set_events(client, (_READ if reading else 0)
                         | (_WRITE if session.outbox else 0))

    def _set_events(self, client: _Client, events: int) -> None:
        """(Un)registers the socket; a socket with nothing to wait for is
        not in the selector at all (a hang-up is seen once it is read
        again)."""
        if events == client.events:
            return
        if not events:
            self._selector.unregister(client.sock)
        elif not client.events:
            self._selector.register(client.sock, events, None)
        else:
            self._selector.modify(client.sock, events, None)
        client.events = events

    def _flush_dirty(self) -> None:
        core = self.core
        self._flush_journal()
        while core.dirty:
            session = core.dirty.pop()
            client = self._by_session.get(session)
            if client is not None:
                self._write(client)

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        self._by_session.pop(client.session, None)
        self._paused.discard(client)
        if client.events:
            self._selector.unregister(client.sock)
            client.events = 0
        client.sock.close()
        self.core.close_session(client.session)
        while self._deaf:
            listener = self._deaf.pop()
            if listener in self._listeners:
                self._selector.register(listener, _READ, None)

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
        if self.journal is not None:
            if self.journal_error is None:
                self.journal.close()
            else:
                self.journal.abandon()

