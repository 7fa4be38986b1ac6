"""``pyxs sandbox``: a command run against a fresh, private daemon.

The child finds what an operator would find on a Xen host: dom0's keys in
the store (unless ``--bare``), and on its ``PATH`` this very pyxs as
``pyxs`` and, where Xen's packages are at hand, Xen's ``xenstore-*`` tools,
each a small wrapper script in the sandbox's directory that runs the real
thing with what it needs (this interpreter and pyxs; Xen's libraries).
Nothing of the caller's environment needs activating.
"""

import contextlib
import errno
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional

from . import Terminated, error_line
from ._output import emit
from ._parse import UsageError

__all__ = ["cmd_sandbox", "write_tools", "XEN_TOOLS"]

#: Xen's command-line tools a sandbox offers when Xen's packages are found.
XEN_TOOLS = ("xenstore-read", "xenstore-write", "xenstore-ls",
             "xenstore-list", "xenstore-rm", "xenstore-chmod",
             "xenstore-watch", "xenstore-exists", "xenstore-control",
             "xenstore")


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turns SIGTERM into :class:`Terminated` so cleanup code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_status(returncode: int) -> int:
    """A shell-style status: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _run_command(command: List[str], env: Dict[str, str]) -> int:
    """Runs ``command`` to completion and returns its exit status."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        error_line("cannot run %s: %s" % (command[0], exc.strerror or exc))
        return 126 if exc.errno == errno.EACCES else 127
    try:
        try:
            return _exit_status(child.wait())
        except KeyboardInterrupt:
            # The child got the SIGINT too; its own status tells the rest.
            return _exit_status(child.wait())
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()


def _serve(daemon: Any) -> int:
    """Prints where the daemon is, then waits for Ctrl-C."""
    from ..exceptions import ConnectionError
    emit(daemon.socket_path)
    emit("export XENSTORED_PATH=%s" % shlex.quote(daemon.socket_path))
    status = daemon.process.wait()
    raise ConnectionError("the %s daemon exited with status %d"
                          % (daemon.kind, status))


def _script(path: str, env: Dict[str, str], command: List[str]) -> None:
    lines = ["#!/bin/sh"] + ["%s=%s; export %s" % (name, shlex.quote(value),
                                                   name)
                             for name, value in sorted(env.items())]
    lines.append("exec %s \"$@\"" % " ".join(shlex.quote(word)
                                             for word in command))
    with open(path, "w") as script:
        script.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)


def _python_path(env: Mapping[str, str]) -> str:
    """``PYTHONPATH`` with the directory holding this pyxs first."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    return os.pathsep.join([top] + ([env["PYTHONPATH"]]
                                    if env.get("PYTHONPATH") else []))


def _tool_xen(daemon: Any) -> Any:
    """The Xen whose tools the sandbox offers: the daemon's own, else one
    already on this machine (never fetched for the embedded daemon)."""
    from ..testing import ProvisionError, find_xen
    if daemon.xen is not None:
        return daemon.xen
    for release in (daemon.release, None, "4.20"):
        try:
            return find_xen(fetch=False, release=release)
        except (ProvisionError, ValueError):
            continue
    return None


def write_tools(directory: str, xen: Optional[Any]) -> List[str]:
    """Writes the ``pyxs`` wrapper and, with ``xen``, those of its
    ``xenstore-*`` tools into ``directory``; returns the names written."""
    os.makedirs(directory, exist_ok=True)
    _script(os.path.join(directory, "pyxs"),
            {"PYTHONPATH": _python_path(os.environ)},
            [sys.executable, "-m", "pyxs"])
    written = ["pyxs"]
    if xen is None:
        return written
    for name in XEN_TOOLS:
        path = xen.tool(name)
        if path is None:
            continue
        _script(os.path.join(directory, name), xen.environ(),
                xen.command(path))
        written.append(name)
    return written


def _seed(daemon: Any) -> None:
    from ..testing import seed_dom0
    with daemon.client(timeout=30) as client:
        seed_dom0(client)


def cmd_sandbox(args: Dict[str, Any]) -> int:
    """Runs a command (or waits) with a fresh daemon, then stops it."""
    from ..testing import DAEMON_KINDS, XenStoreDaemon
    if args["daemon"] not in DAEMON_KINDS:
        raise UsageError("--daemon: choose one of %s, not %r" % (
            ", ".join(DAEMON_KINDS), args["daemon"]), "sandbox")
    try:
        daemon = XenStoreDaemon(args["daemon"], xen=args["xen"])
    except ValueError as exc:
        raise UsageError(str(exc), "sandbox") from None
    command = list(args["command"])
    with _sigterm_raises(), daemon:
        if not args["bare"]:
            _seed(daemon)
        if not command:
            return _serve(daemon)
        env = dict(os.environ)
        env.update(daemon.environ())
        assert daemon.directory is not None
        bindir = os.path.join(daemon.directory, "bin")
        write_tools(bindir, _tool_xen(daemon))
        env["PATH"] = os.pathsep.join([bindir] + (
            [env["PATH"]] if env.get("PATH") else []))
        # Programs in the sandbox import this very pyxs, installed or not.
        env["PYTHONPATH"] = _python_path(env)
        return _run_command(command, env)
