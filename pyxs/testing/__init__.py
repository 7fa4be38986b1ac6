"""Real XenStore daemons for tests: yours and ours.

:class:`XenStoreDaemon` starts Xen's C ``xenstored``, the OCaml
``oxenstored`` or pyxs's embedded daemon in a private temporary directory and
stops it again, leaving no process or file behind::

    from pyxs.testing import XenStoreDaemon

    with XenStoreDaemon("xenstored", xen="4.20") as daemon, \
            daemon.client() as c:
        c.write(b"/vm/1/state", b"running")

Xen's daemons run without a hypervisor: a small ``LD_PRELOAD`` library,
compiled on first use, answers the few hypervisor calls they make. Each
Xen release of :data:`XEN_RELEASES` can run (C xenstored of every one,
oxenstored of those Debian ships); where their daemons come from is
explained in ``pyxs.testing._provision``.

Invariants: every daemon runs in a directory of its own (socket, logs,
configuration), so any number run side by side; :meth:`XenStoreDaemon.stop`
leaves no process and, for a directory pyxs made, no file behind.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ._provision import (
    DEFAULT_RELEASE,
    XEN_RELEASES,
    ProvisionError,
    XenInstall,
    build_stub,
    check_release,
    find_xen,
)
from ._seed import DOM0_KEYS, seed_dom0
from ._source import SOURCE_RELEASE

__all__ = ["XenStoreDaemon", "DAEMON_KINDS", "ProvisionError",
           "available_daemons", "start_daemon", "find_xen", "XenInstall",
           "XEN_RELEASES", "DEFAULT_RELEASE", "release_kinds", "seed_dom0",
           "DOM0_KEYS"]

#: Every daemon kind :class:`XenStoreDaemon` can start.
DAEMON_KINDS = ("xenstored", "oxenstored", "embedded")


def release_kinds(release: str) -> Tuple[str, ...]:
    """The kinds of Xen daemon that ``release`` offers: a release built
    from source has C xenstored only."""
    check_release(release)
    if release == SOURCE_RELEASE:
        return ("xenstored",)
    return ("xenstored", "oxenstored")

# Generous: a loaded 2-core machine once took over 10 s to start the
# embedded daemon (a Python process), and a dead daemon ends the wait at once.
_START_TIMEOUT = 30.0


class XenStoreDaemon:
    """One XenStore daemon in its own temporary directory.

    :param kind: ``"xenstored"`` (Xen's C daemon), ``"oxenstored"`` (Xen's
        OCaml daemon) or ``"embedded"`` (pyxs's own, pure Python).
    :param xen: for Xen's daemons, the release (one of
        :data:`XEN_RELEASES`; ``None`` is :data:`DEFAULT_RELEASE`). For the
        embedded daemon, ``None`` is its own newest protocol, and a release
        is passed on as ``--xen RELEASE`` to make it behave as that one.
    :param directory: where the socket and logs go; a fresh temporary
        directory, removed on :meth:`stop`, when not given.
    :param args: extra command-line arguments for the daemon.
    :param domains: domain ids that get a socket of their own, whose
        connections act as that (unprivileged) domain; see
        :meth:`domain_socket`. Only the embedded daemon offers this: Xen's
        daemons talk to guests through shared memory rings.
    """

    def __init__(self, kind: str = "xenstored", xen: Optional[str] = None,
                 directory: Optional[str] = None,
                 args: Optional[List[str]] = None,
                 domains: Iterable[int] = ()) -> None:
        if kind not in DAEMON_KINDS:
            raise ValueError("unknown daemon kind %r; choose one of %s"
                             % (kind, ", ".join(DAEMON_KINDS)))
        #: The Xen release: of the daemon, or the one the embedded daemon
        #: imitates (``None``: its own newest).
        self.release: Optional[str] = (
            check_release(xen) if kind != "embedded" or xen is not None
            else None)
        if self.release and kind != "embedded" and \
                kind not in release_kinds(self.release):
            raise ValueError("Xen %s has no %s (it is built from source, "
                             "with C xenstored only)" % (self.release, kind))
        self.domains = sorted(set(domains))
        if self.domains and kind != "embedded":
            raise ValueError("only the embedded daemon serves connections "
                             "as a domain; %s needs a real guest" % kind)
        self.kind = kind
        self.extra_args = list(args or [])
        self._own_directory = directory is None
        self.directory = directory
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.xen: Optional[XenInstall] = None

    @property
    def label(self) -> str:
        """Kind and release, e.g. ``xenstored-4.20`` (``embedded`` for the
        embedded daemon with its own protocol)."""
        if self.release is None:
            return self.kind
        return "%s-%s" % (self.kind, self.release)

    @property
    def socket_path(self) -> str:
        """The daemon's Unix socket."""
        if self.directory is None:
            raise RuntimeError("the daemon has not been started")
        return os.path.join(self.directory, "socket")

    @property
    def log_path(self) -> str:
        """The file collecting the daemon's own output."""
        return os.path.join(self.directory or "", "daemon.log")

    @property
    def running(self) -> bool:
        """True while the daemon process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """The daemon's process id while it runs."""
        return self.process.pid if self.process else None

    def domain_socket(self, domid: int) -> str:
        """The socket whose connections act as domain ``domid``."""
        if domid not in self.domains:
            raise ValueError("domain %d has no socket; pass domains=[%d]"
                             % (domid, domid))
        return os.path.join(self.directory or "", "domain-%d.socket" % domid)

    def environ(self) -> Dict[str, str]:
        """Variables that point libxenstore-style clients at this daemon."""
        return {"XENSTORED_PATH": self.socket_path}

    def tool_xen(self) -> XenInstall:
        """The Xen whose tools talk to this daemon: its own release's (the
        default release's for the embedded daemon)."""
        if self.xen is not None:
            return self.xen
        release = self.release if self.kind != "embedded" else None
        return find_xen(release=release)

    def tool_path(self, name: str) -> str:
        """Path of one of libxenstore's CLI tools, e.g. ``xenstore-read``,
        or of Xen's ``test-xenstore``."""
        xen = self.tool_xen()
        path = xen.tool(name)
        if path is None:
            raise ProvisionError("%s has no %s" % (xen, name))
        return path

    def tool_command(self, name: str) -> List[str]:
        """The command line (without arguments) that runs tool ``name``."""
        return self.tool_xen().command(self.tool_path(name))

    def tool_environ(self) -> Dict[str, str]:
        """The full environment that runs a CLI tool against this daemon."""
        env = dict(os.environ)
        env.update(self.tool_xen().environ())
        env.update(self.environ())
        return env

    def run_tool(self, name: str, *args: Union[str, bytes],
                 check: bool = False, timeout: float = 30.0
                 ) -> "subprocess.CompletedProcess[bytes]":
        """Runs a libxenstore CLI tool on this daemon and waits for it.

        ``daemon.run_tool("xenstore-read", "-R", "/vm/1")`` gives a
        :class:`subprocess.CompletedProcess` whose ``stdout`` and
        ``stderr`` are bytes; ``check=True`` raises on a non-zero status.
        """
        return subprocess.run(
            self.tool_command(name) + list(args), env=self.tool_environ(),
            stdin=subprocess.DEVNULL, capture_output=True, check=check,
            timeout=timeout)

    def spawn_tool(self, name: str, *args: Union[str, bytes],
                   **kwargs: Any) -> "subprocess.Popen[bytes]":
        """Starts a CLI tool (e.g. ``xenstore-watch``) without waiting;
        ``kwargs`` go to :class:`subprocess.Popen`."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.tool_command(name) + list(args),
                                env=self.tool_environ(), **kwargs)

    def client(self, domid: Optional[int] = None, **kwargs: Any) -> "Any":
        """A new, not yet connected :class:`pyxs.Client` for this daemon;
        with ``domid``, one acting as that domain (see ``domains``)."""
        from ..client import Client
        path = self.socket_path if domid is None else \
            self.domain_socket(domid)
        return Client(unix_socket_path=path, **kwargs)

    def _command(self) -> List[str]:
        if self.kind == "embedded":
            command = [sys.executable, "-m", "pyxs.server",
                       "--socket", self.socket_path]
            for domid in self.domains:
                command += ["--domain-socket", "%d=%s" % (
                    domid, self.domain_socket(domid))]
            if self.release is not None:
                command += ["--xen", self.release]
            return command
        self.xen = xen = find_xen(release=self.release)
        binary = xen.daemon(self.kind)
        if binary is None:
            raise ProvisionError("%s has no %s" % (xen, self.kind))
        start = xen.command(binary, preload=build_stub())
        if self.kind == "xenstored":
            return start + ["--no-fork"]
        assert self.directory is not None
        config = os.path.join(self.directory, "oxenstored.conf")
        with open(config, "w") as handle:
            for key, name in (("pid-file", "pid"),
                              ("xenstored-log-file", "xenstored.log"),
                              ("access-log-file", "access.log")):
                handle.write("%s = %s\n" % (key, os.path.join(
                    self.directory, name)))
        return _plugin_namespace(xen) + start + [
            "--no-fork", "--no-domain-init", "--config-file", config]

    def _environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.pop("XENSTORED_PATH", None)
        if self.kind == "embedded":
            top = os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join(
                [top] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                         else []))
            return env
        assert self.xen is not None and self.directory is not None
        env.update(self.xen.environ(preload=build_stub()))
        env["XENSTORED_RUNDIR"] = self.directory
        env["PYXS_STUB_RUNDIR"] = self.directory
        return env

    def start(self) -> "XenStoreDaemon":
        """Starts the daemon and waits until its socket accepts clients."""
        if self.running:
            return self
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="pyxs-%s-" % self.kind)
        try:
            command = self._command() + self.extra_args
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    command, env=self._environment(), cwd=self.directory,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        # The daemon gives no readiness signal, so probe its socket with a
        # growing pause; a dead process ends the wait at once.
        deadline = time.monotonic() + _START_TIMEOUT
        pause = 0.001
        process = self.process
        assert process is not None
        while True:
            if process.poll() is not None:
                raise ProvisionError("%s exited with status %s: %s" % (
                    self.label, process.returncode, self._log_tail()))
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.socket_path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        "%s did not open %s within %.0f s: %s" % (
                            self.label, self.socket_path, _START_TIMEOUT,
                            self._log_tail())) from None
            finally:
                probe.close()
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                text = log.read()[-600:].decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "(no output)"

    def kill(self) -> None:
        """Kills the daemon abruptly (SIGKILL), as a crash would."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stops the daemon and removes its directory if pyxs made it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            if self.kind == "embedded":
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
            else:
                # Nothing of a throwaway Xen daemon is worth a clean exit,
                # and oxenstored sometimes ignores SIGTERM for seconds.
                process.kill()
            process.wait()
        if self._own_directory and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def restart(self) -> "XenStoreDaemon":
        """Starts a fresh daemon on the same socket path (an empty store)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        return self.start()

    def __enter__(self) -> "XenStoreDaemon":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "XenStoreDaemon(%r, xen=%r, socket=%r)" % (
            self.kind, self.release, self.directory)


def _plugin_namespace(xen: XenInstall) -> List[str]:
    """A command prefix that shows oxenstored its plugins where they were
    built to be, for an unpacked oxenstored that loads plugins (4.20).

    It loads ``/usr/lib/xen-<version>/ocaml/...`` by an absolute path.
    The prefix runs it in a private mount namespace (``unshare -m``, which
    needs root, else a user namespace: ``unshare -r -m``) where an
    overlay on ``/usr/lib`` adds a link to the unpacked directory; the
    host's ``/usr/lib`` is seen unchanged outside, and inside except for
    that entry.
    """
    plugins = os.path.join(os.path.dirname(xen.bindir), "ocaml")
    if xen.root == "/" or not os.path.isdir(plugins):
        return []
    layer = os.path.join(os.path.dirname(xen.root), os.path.basename(
        xen.root) + ".usr-lib")
    name = os.path.basename(os.path.dirname(xen.bindir))
    if not os.path.lexists(os.path.join(layer, name)):
        os.makedirs(layer, exist_ok=True)
        try:
            os.symlink(os.path.dirname(xen.bindir), os.path.join(layer, name))
        except FileExistsError:
            pass   # a parallel start made it
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ProvisionError("oxenstored %s needs unshare (util-linux) to "
                             "find its plugins" % xen.release)
    script = ('mount -t overlay overlay -o "lowerdir=$1:/usr/lib" /usr/lib '
              '&& shift && exec "$@"')
    return ([unshare] + (["-m"] if os.geteuid() == 0 else ["-r", "-m"]) +
            ["sh", "-c", script, "sh", layer])


def start_daemon(kind: str = "xenstored", **kwargs: Any) -> XenStoreDaemon:
    """Starts and returns a :class:`XenStoreDaemon`; call ``stop()`` after."""
    return XenStoreDaemon(kind, **kwargs).start()


def available_daemons(xen: Optional[str] = None) -> List[str]:
    """The daemon kinds this machine can start for Xen release ``xen``
    (fetching or building it if needed)."""
    kinds = ["embedded"]
    try:
        install = find_xen(release=xen)
        build_stub()
    except ProvisionError:
        return kinds
    return [k for k in release_kinds(install.release)
            if install.daemon(k)] + kinds
