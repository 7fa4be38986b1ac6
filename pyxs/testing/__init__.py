"""Real XenStore daemons for tests: yours and ours.

:class:`XenStoreDaemon` starts Xen's C ``xenstored``, the OCaml
``oxenstored`` or pyxs's embedded daemon in a private temporary directory and
stops it again, leaving no process or file behind::

    from pyxs.testing import XenStoreDaemon

    with XenStoreDaemon("xenstored") as daemon, daemon.client() as c:
        c.write(b"/vm/1/state", b"running")

Xen's daemons run without a hypervisor: a small ``LD_PRELOAD`` library,
compiled on first use, answers the few hypervisor calls they make. Where the
daemons come from is explained in :mod:`pyxs.testing._provision`.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Union

from ._provision import ProvisionError, XenInstall, build_stub, find_xen

__all__ = ["XenStoreDaemon", "DAEMON_KINDS", "ProvisionError",
           "available_daemons", "start_daemon", "find_xen", "XenInstall"]

#: Every daemon kind :class:`XenStoreDaemon` can start.
DAEMON_KINDS = ("xenstored", "oxenstored", "embedded")

_START_TIMEOUT = 10.0


class XenStoreDaemon:
    """One XenStore daemon in its own temporary directory.

    :param kind: ``"xenstored"`` (Xen's C daemon), ``"oxenstored"`` (Xen's
        OCaml daemon) or ``"embedded"`` (pyxs's own, pure Python).
    :param directory: where the socket and logs go; a fresh temporary
        directory, removed on :meth:`stop`, when not given.
    :param args: extra command-line arguments for the daemon.
    :param domains: domain ids that get a socket of their own, whose
        connections act as that (unprivileged) domain; see
        :meth:`domain_socket`. Only the embedded daemon offers this: Xen's
        daemons talk to guests through shared memory rings.
    """

    def __init__(self, kind: str = "xenstored",
                 directory: Optional[str] = None,
                 args: Optional[List[str]] = None,
                 domains: Iterable[int] = ()) -> None:
        if kind not in DAEMON_KINDS:
            raise ValueError("unknown daemon kind %r; choose one of %s"
                             % (kind, ", ".join(DAEMON_KINDS)))
        self.domains = sorted(set(domains))
        if self.domains and kind != "embedded":
            raise ValueError("only the embedded daemon serves connections "
                             "as a domain; %s needs a real guest" % kind)
        self.kind = kind
        self.extra_args = list(args or [])
        self._own_directory = directory is None
        self.directory = directory
        self.process: Optional[subprocess.Popen] = None
        self.xen: Optional[XenInstall] = None

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

    def tool_path(self, name: str) -> str:
        """Path of one of libxenstore's CLI tools, e.g. ``xenstore-read``."""
        xen = self.xen or find_xen()
        path = xen.tool(name)
        if path is None:
            raise ProvisionError("%s has no %s" % (xen, name))
        return path

    def tool_environ(self) -> Dict[str, str]:
        """The full environment that runs a CLI tool against this daemon."""
        env = dict(os.environ)
        env.update((self.xen or find_xen()).environ())
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
            [self.tool_path(name)] + list(args), env=self.tool_environ(),
            stdin=subprocess.DEVNULL, capture_output=True, check=check,
            timeout=timeout)

    def spawn_tool(self, name: str, *args: Union[str, bytes],
                   **kwargs: Any) -> "subprocess.Popen[bytes]":
        """Starts a CLI tool (e.g. ``xenstore-watch``) without waiting;
        ``kwargs`` go to :class:`subprocess.Popen`."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen([self.tool_path(name)] + list(args),
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
            return command
        self.xen = xen = find_xen()
        binary = xen.daemon(self.kind)
        if binary is None:
            raise ProvisionError("%s has no %s" % (xen, self.kind))
        if self.kind == "xenstored":
            return [binary, "--no-fork"]
        config = os.path.join(self.directory, "oxenstored.conf")
        with open(config, "w") as handle:
            for key, name in (("pid-file", "pid"),
                              ("xenstored-log-file", "xenstored.log"),
                              ("access-log-file", "access.log")):
                handle.write("%s = %s\n" % (key, os.path.join(
                    self.directory, name)))
        return [binary, "--no-fork", "--no-domain-init",
                "--config-file", config]

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
        assert self.xen is not None
        env.update(self.xen.environ())
        env["LD_PRELOAD"] = build_stub()
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
        while True:
            if self.process.poll() is not None:
                raise ProvisionError("%s exited with status %s: %s" % (
                    self.kind, self.process.returncode, self._log_tail()))
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.socket_path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        "%s did not open %s within %.0f s: %s" % (
                            self.kind, self.socket_path, _START_TIMEOUT,
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
        if self.running:
            self.process.kill()
            self.process.wait()

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
        return "XenStoreDaemon(%r, socket=%r)" % (self.kind, self.directory)


def start_daemon(kind: str = "xenstored", **kwargs: Any) -> XenStoreDaemon:
    """Starts and returns a :class:`XenStoreDaemon`; call ``stop()`` after."""
    return XenStoreDaemon(kind, **kwargs).start()


def available_daemons() -> List[str]:
    """The daemon kinds this machine can start (fetching Xen if needed)."""
    kinds = ["embedded"]
    try:
        xen = find_xen()
        build_stub()
    except ProvisionError:
        return kinds
    return [k for k in ("xenstored", "oxenstored") if xen.daemon(k)] + kinds
