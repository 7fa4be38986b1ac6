"""A XenBus device without Xen: a pseudo-terminal relayed to a real daemon.

:class:`XenBusRelay` opens a pseudo-terminal pair in raw mode and copies
whole XenStore packets between its master end and a Unix socket connected to
a daemon (see :class:`pyxs.testing.XenStoreDaemon`). A client opens the slave
end, :attr:`XenBusRelay.device`, exactly as it would open ``/dev/xen/xenbus``::

    with XenStoreDaemon("xenstored") as daemon, \\
            XenBusRelay(daemon.socket_path) as relay, \\
            Client(xen_bus_path=relay.device) as c:
        c.write(b"/vm/1/state", b"running")

Options make the relay behave like older Linux kernels' xenbus driver
(replies to WATCH/UNWATCH without request ids, bare watch event headers) and
cut the byte stream into small random pieces, so that clients see short reads.

One relay is one daemon connection, like one open of the real device: open
the device from one client at a time (reopening later is fine; watches and
transactions of the daemon connection survive that).
"""

import errno
import os
import random
import select
import socket
import termios
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._internal import HEADER, PAYLOAD_MAX, Op

__all__ = ["XenBusRelay", "RelayError", "make_raw"]

_READ_SIZE = 65536
_QUIRK_OPS = (Op.WATCH, Op.UNWATCH)
# oxenstored answers DIRECTORY on its socket with the whole list, however
# long; the relay passes such replies on as it gets them.
_DAEMON_OVERSIZE = (Op.DIRECTORY,)
_OVERSIZE_MAX = 1 << 24


class RelayError(RuntimeError):
    """The relay thread failed (a framing error or an unexpected OS error)."""


def make_raw(fd: int) -> None:
    """Puts a terminal fully in raw mode: 8-bit clean, no echo, no signals,
    no line editing, no CR/NL translation, no XON/XOFF flow control."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    for name in ("IGNBRK", "BRKINT", "PARMRK", "ISTRIP", "INLCR", "IGNCR",
                 "ICRNL", "IXON", "IXOFF", "IXANY", "INPCK", "IMAXBEL",
                 "IUCLC"):
        iflag &= ~getattr(termios, name, 0)
    oflag &= ~termios.OPOST
    for name in ("ECHO", "ECHOE", "ECHOK", "ECHONL", "ECHOCTL", "ECHOKE",
                 "ICANON", "ISIG", "IEXTEN", "XCASE"):
        lflag &= ~getattr(termios, name, 0)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8 | termios.CREAD
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW,
                      [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def _split_packets(buffer: bytearray, side: str,
                   oversize: Tuple[int, ...] = ()) -> List[bytearray]:
    """Removes and returns the whole packets at the start of ``buffer``;
    ops in ``oversize`` may exceed the 4096-byte payload limit."""
    packets = []
    offset = 0
    while len(buffer) - offset >= HEADER.size:
        op, _, _, size = HEADER.unpack_from(buffer, offset)
        if size > (_OVERSIZE_MAX if op in oversize else PAYLOAD_MAX):
            raise RelayError("%s sent a packet header claiming %d payload "
                             "bytes" % (side, size))
        stop = offset + HEADER.size + size
        if stop > len(buffer):
            break
        packets.append(buffer[offset:stop])
        offset = stop
    del buffer[:offset]
    return packets


class XenBusRelay:
    """Exposes a XenStore daemon's socket as a XenBus-like character device.

    :param socket_path: the daemon's Unix socket.
    :param watch_rq_id_zero: answer WATCH and UNWATCH (also with ERROR) with
        request id 0 and transaction id 0, as Linux xenbus did before 5.x.
    :param bare_events: send watch events with request and transaction id 0,
        whatever the daemon put there (old kernels set only type and len).
    :param chunk: write the byte stream, both ways, in random pieces of 1 to
        ``chunk`` bytes instead of whole packets.
    :param seed: seed of the random piece sizes, for reproducible runs.

    Counters, updated by the relay thread: :attr:`requests` and
    :attr:`replies` (packets relayed each way), :attr:`rewritten_replies`
    and :attr:`rewritten_events` (packets changed by the quirks) and
    :attr:`writes` (write calls towards the client).
    """

    def __init__(self, socket_path: str, watch_rq_id_zero: bool = False,
                 bare_events: bool = False, chunk: Optional[int] = None,
                 seed: Optional[int] = None) -> None:
        if chunk is not None and chunk < 1:
            raise ValueError("chunk must be at least 1 byte")
        self.socket_path = socket_path
        self.watch_rq_id_zero = watch_rq_id_zero
        self.bare_events = bare_events
        self.chunk = chunk
        self._random = random.Random(seed)
        #: Packets relayed from the client to the daemon.
        self.requests = 0
        #: Packets relayed from the daemon to the client.
        self.replies = 0
        #: Replies whose ids the ``watch_rq_id_zero`` quirk changed.
        self.rewritten_replies = 0
        #: Watch events whose ids the ``bare_events`` quirk changed.
        self.rewritten_events = 0
        #: Write calls towards the client (more than packets with ``chunk``).
        self.writes = 0
        #: The exception that ended the relay thread, if any.
        self.error: Optional[BaseException] = None
        self._device: Optional[str] = None
        self._master: Optional[int] = None
        self._slave: Optional[int] = None
        self._socket: Optional[socket.socket] = None
        self._wake_r: Optional[int] = None
        self._wake_w: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._paused = False
        self._watch_requests: Dict[int, int] = {}  # rq_id -> op, in flight

    @property
    def device(self) -> str:
        """The pseudo-terminal to open instead of ``/dev/xen/xenbus``."""
        if self._device is None:
            raise RuntimeError("the relay is not started")
        return self._device

    @property
    def running(self) -> bool:
        """True while the relay thread copies packets."""
        return self._thread is not None and self._thread.is_alive()

    # -- life cycle ---------------------------------------------------------

    def start(self) -> "XenBusRelay":
        """Connects to the daemon, opens the terminal and starts copying."""
        if self._thread is not None:
            raise RuntimeError("a relay can be started only once")
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket = sock
            sock.connect(self.socket_path)
            sock.setblocking(False)
            self._master, self._slave = os.openpty()
            for fd in (self._master, self._slave):
                os.set_inheritable(fd, False)
                make_raw(fd)
            os.set_blocking(self._master, False)
            self._device = os.ttyname(self._slave)
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC |
                                                  os.O_NONBLOCK)
            self._thread = threading.Thread(
                target=self._run, name="pyxs-xenbus-relay", daemon=True)
            self._thread.start()
        except BaseException:
            self._close_all()
            raise
        return self

    def stop(self) -> None:
        """Stops the thread and closes every descriptor; idempotent.

        Clients still holding the device then read end-of-file or EIO.
        :raises RelayError: if the relay thread had failed.
        """
        self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._close_all()
        error, self.error = self.error, None
        if error is not None:
            raise RelayError("the relay failed: %r" % (error,)) from error

    def pause(self) -> None:
        """Holds back every packet from the daemon until :meth:`resume`.

        Replies to requests sent after this call stay held, so a client can
        be made to give up waiting deterministically.
        """
        self._paused = True

    def resume(self) -> None:
        """Delivers the held packets and relays normally again."""
        self._paused = False
        self._wake()

    def __enter__(self) -> "XenBusRelay":
        return self.start()

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        try:
            self.stop()
        except RelayError:
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return "XenBusRelay(%r, device=%r)" % (self.socket_path, self._device)

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # full pipe: the thread will wake anyway

    def _close_all(self) -> None:
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                os.close(fd)
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            # Hang up, as the device does when xenstored goes away: the
            # client reads end-of-file instead of waiting forever.
            master, self._master = self._master, None
            if master is not None:
                os.close(master)

    def _piece(self, pending: bytearray) -> bytearray:
        if self.chunk is None:
            return pending
        return pending[:self._random.randint(1, self.chunk)]

    def _loop(self) -> None:
        master, wake = self._master, self._wake_r
        sock = self._socket
        assert master is not None and wake is not None and sock is not None
        from_client, to_daemon = bytearray(), bytearray()
        from_daemon, to_client = bytearray(), bytearray()
        held: List[bytes] = []
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        while not self._stopping:
            if held and not self._paused:
                for kept in held:
                    to_client += kept
                held = []
            poller.register(master, select.POLLIN |
                            (select.POLLOUT if to_client else 0))
            poller.register(sock, select.POLLIN |
                            (select.POLLOUT if to_daemon else 0))
            for fd, events in poller.poll():
                if fd == wake:
                    while True:
                        try:
                            if not os.read(wake, 4096):
                                break
                        except BlockingIOError:
                            break
                elif fd == master:
                    if events & select.POLLOUT and to_client:
                        written = _write(lambda d: os.write(master, d),
                                         self._piece(to_client))
                        del to_client[:written]
                        self.writes += 1
                    if events & (select.POLLIN | select.POLLHUP |
                                 select.POLLERR):
                        data = _read(lambda: os.read(master, _READ_SIZE))
                        if data is None:
                            continue
                        if not data:
                            return  # cannot happen while we hold the slave
                        from_client += data
                        for packet in _split_packets(from_client,
                                                     "the client"):
                            self._from_client(packet)
                            to_daemon += packet
                else:
                    if events & select.POLLOUT and to_daemon:
                        written = _write(sock.send, self._piece(to_daemon))
                        del to_daemon[:written]
                    if events & (select.POLLIN | select.POLLHUP |
                                 select.POLLERR):
                        data = _read(lambda: sock.recv(_READ_SIZE))
                        if data is None:
                            continue
                        if not data:
                            return  # the daemon closed the connection
                        from_daemon += data
                        for packet in _split_packets(
                                from_daemon, "the daemon", _DAEMON_OVERSIZE):
                            self._from_daemon(packet)
                            if self._paused or held:
                                held.append(bytes(packet))
                            else:
                                to_client += packet

    def _from_client(self, packet: bytearray) -> None:
        self.requests += 1
        op, rq_id = HEADER.unpack_from(packet)[:2]
        if self.watch_rq_id_zero and op in _QUIRK_OPS:
            self._watch_requests[rq_id] = op

    def _from_daemon(self, packet: bytearray) -> None:
        self.replies += 1
        op, rq_id, tx_id, size = HEADER.unpack_from(packet)
        if op == Op.WATCH_EVENT:
            if self.bare_events:
                HEADER.pack_into(packet, 0, op, 0, 0, size)
                self.rewritten_events += 1
        elif self._watch_requests.pop(rq_id, None) is not None:
            HEADER.pack_into(packet, 0, op, 0, 0, size)
            self.rewritten_replies += 1


def _read(read: Callable[[], bytes]) -> Optional[bytes]:
    """One read; None when it would block, b"" at end of file."""
    try:
        return read()
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:  # a terminal's way of saying hang-up
            return b""
        raise


def _write(write: Callable[[bytearray], int], data: bytearray) -> int:
    """One write; returns how many bytes went (0 when it would block)."""
    try:
        return write(data)
    except (BlockingIOError, InterruptedError):
        return 0
