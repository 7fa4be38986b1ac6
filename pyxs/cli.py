"""The ``pyxs`` command: XenStore from the shell.

::

    pyxs write /vm/1/state running
    pyxs read /vm/1/state
    pyxs ls /local/domain/0
    pyxs sandbox -- ./my-test-suite

:func:`main` is the entry point; it returns the exit status (0 success, 1 a
daemon error or ``exists`` false, 2 a usage error, 3 a connection or timeout
problem, 130 Ctrl-C) instead of exiting, so it can be called from Python.
"""

import argparse
import base64
import contextlib
import errno
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import __version__
from .client import Client
from .connection import default_xenbus_path
from .exceptions import ConnectionError, PyXSError, TimeoutError
from .helpers import error, validate_path, validate_perms, validate_watch_path

__all__ = ["main", "build_parser", "escape", "json_value", "EXIT_OK",
           "EXIT_ERROR", "EXIT_USAGE", "EXIT_CONNECTION", "EXIT_INTERRUPTED"]

log = logging.getLogger("pyxs.cli")

EXIT_OK = 0
EXIT_ERROR = 1          # an error reply from the daemon; ``exists`` false
EXIT_USAGE = 2          # bad command line or argument
EXIT_CONNECTION = 3     # no daemon, connection lost, timeout
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143   # SIGTERM (sandbox)

DEFAULT_TIMEOUT = 10.0

JsonValue = Union[str, Dict[str, str]]


class _Terminated(Exception):
    """Raised by the SIGTERM handler of ``sandbox``."""


# -- output helpers -----------------------------------------------------------

_ESCAPES = {0x5c: "\\\\", 0x0a: "\\n", 0x09: "\\t", 0x0d: "\\r"}


def escape(value: bytes, quote: bool = False) -> str:
    """Renders bytes as printable ASCII.

    Printable ASCII stays as it is; backslash, newline, tab and carriage
    return become ``\\\\ \\n \\t \\r``, every other byte ``\\xNN``. With
    ``quote``, ``"`` becomes ``\\"`` too.
    """
    parts = []
    for byte in value:
        if byte in _ESCAPES:
            parts.append(_ESCAPES[byte])
        elif quote and byte == 0x22:
            parts.append('\\"')
        elif 0x20 <= byte < 0x7f:
            parts.append(chr(byte))
        else:
            parts.append("\\x%02x" % byte)
    return "".join(parts)


def json_value(value: bytes) -> JsonValue:
    """A value for JSON: text if valid UTF-8, else ``{"base64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _text(path: bytes) -> str:
    """A path from the daemon as text (paths are ASCII in practice)."""
    return path.decode("utf-8", "backslashreplace")


def _emit(line: str) -> None:
    """Prints one line and flushes it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _emit_json(data: Any) -> None:
    """Prints ``data`` as one line of JSON."""
    _emit(json.dumps(data))


def _emit_raw(value: bytes) -> None:
    """Writes bytes unchanged, then a newline."""
    sys.stdout.flush()
    sys.stdout.buffer.write(value + b"\n")
    sys.stdout.buffer.flush()


# -- node commands ------------------------------------------------------------

def cmd_read(client: Client, args: argparse.Namespace) -> int:
    """Prints the value of each path."""
    values = [(path, client.read(path)) for path in args.paths]
    if args.json:
        _emit_json({path: json_value(value) for path, value in values})
        return EXIT_OK
    for _, value in values:
        if args.raw:
            _emit_raw(value)
        else:
            _emit(escape(value))
    return EXIT_OK


def cmd_write(client: Client, args: argparse.Namespace) -> int:
    """Writes the values; several pairs are written in one transaction."""
    pairs = [(path, os.fsencode(value)) for path, value in
             zip(args.pairs[::2], args.pairs[1::2])]
    if len(pairs) == 1:
        client.write(*pairs[0])
        return EXIT_OK

    def write_all(tx: Client) -> None:
        tx.write_many(pairs)

    client.run_transaction(write_all)
    return EXIT_OK


def _walk(client: Client, top: str) -> Iterator[Tuple[bytes, bytes, Any]]:
    """``client.walk(top)``, but a missing ``top`` is an ENOENT error."""
    nodes = client.walk(top)
    first = next(nodes, None)
    if first is None:
        raise error(errno.ENOENT).with_context("DIRECTORY", top)
    yield first
    yield from nodes


def _tree_line(top: bytes, path: bytes, value: bytes, flat: bool) -> str:
    """One line of ``ls``: indented name, or full path, and the value."""
    quoted = '"%s"' % escape(value, quote=True)
    if flat:
        return "%s = %s" % (_text(path), quoted)
    relative = path[len(top):].lstrip(b"/")
    depth = relative.count(b"/")
    name = relative.rsplit(b"/", 1)[-1]
    return "%s%s = %s" % (" " * depth, _text(name), quoted)


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    """Prints the tree below a path, values quoted."""
    nodes = _walk(client, args.path)
    top, _, _ = next(nodes)
    if args.json:
        _emit_json({_text(path): json_value(value)
                    for path, value, _ in nodes})
        return EXIT_OK
    for path, value, _ in nodes:
        _emit(_tree_line(top, path, value, args.flat))
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    """Prints the names of a node's children."""
    names = [_text(name) for name in client.list(args.path)]
    if args.json:
        _emit_json(names)
        return EXIT_OK
    for name in names:
        _emit(name)
    return EXIT_OK


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    """Removes each path and everything below it."""
    for path in args.paths:
        client.delete(path)
    return EXIT_OK


def cmd_mkdir(client: Client, args: argparse.Namespace) -> int:
    """Creates each path (and missing parents)."""
    for path in args.paths:
        client.mkdir(path)
    return EXIT_OK


def cmd_exists(client: Client, args: argparse.Namespace) -> int:
    """Exit status 0 if the path exists, 1 if not."""
    found = client.exists(args.path)
    if args.json:
        _emit_json(found)
    return EXIT_OK if found else EXIT_ERROR


def cmd_perms(client: Client, args: argparse.Namespace) -> int:
    """Prints a node's permissions, owner first."""
    perms = [perm.decode("ascii") for perm in client.get_perms(args.path)]
    if args.json:
        _emit_json(perms)
    else:
        _emit(" ".join(perms))
    return EXIT_OK


def cmd_chmod(client: Client, args: argparse.Namespace) -> int:
    """Sets a node's permissions (of the whole subtree with -r)."""
    if not args.recursive:
        client.set_perms(args.path, args.perms)
        return EXIT_OK
    for path, _, _ in _walk(client, args.path):
        client.set_perms(path, args.perms)
    return EXIT_OK


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    """Prints ``path token`` for each event; the token is the watched path."""
    with client.monitor() as monitor:
        for path in args.paths:
            monitor.watch(path, path)
            log.info("watching %s", path)
        seen = 0
        for path, token in monitor.wait(timeout=client.timeout):
            if args.json:
                _emit_json({"path": _text(path), "token": _text(token)})
            else:
                _emit("%s %s" % (_text(path), _text(token)))
            seen += 1
            if seen == args.count:
                break
    return EXIT_OK


# -- domain commands ----------------------------------------------------------

def cmd_domain_path(client: Client, args: argparse.Namespace) -> int:
    """Prints a domain's home path."""
    path = _text(client.get_domain_path(args.domid))
    if args.json:
        _emit_json({"domid": args.domid, "path": path})
    else:
        _emit(path)
    return EXIT_OK


def cmd_introduce(client: Client, args: argparse.Namespace) -> int:
    """Introduces a domain to the daemon."""
    client.introduce_domain(args.domid, args.mfn, args.evtchn)
    return EXIT_OK


def cmd_release(client: Client, args: argparse.Namespace) -> int:
    """Makes the daemon forget a domain."""
    client.release_domain(args.domid)
    return EXIT_OK


# -- sandbox ------------------------------------------------------------------

@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turns SIGTERM into :class:`_Terminated` so cleanup code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

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
        _error("cannot run %s: %s" % (command[0], exc.strerror or exc))
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
    _emit(daemon.socket_path)
    _emit("export XENSTORED_PATH=%s" % shlex.quote(daemon.socket_path))
    status = daemon.process.wait()
    raise ConnectionError("the %s daemon exited with status %d"
                          % (daemon.kind, status))


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Runs a command (or waits) with a fresh daemon, then stops it."""
    from .testing import XenStoreDaemon
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    with _sigterm_raises(), XenStoreDaemon(args.daemon,
                                           xen=args.xen) as daemon:
        log.info("started %s at %s", args.daemon, daemon.socket_path)
        if not command:
            return _serve(daemon)
        env = dict(os.environ)
        env.update(daemon.environ())
        # Programs in the sandbox import this very pyxs, installed or not.
        package_parent = os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                else []))
        return _run_command(command, env)


# -- argument parsing ---------------------------------------------------------

def _timeout(text: str) -> Optional[float]:
    """``--timeout``: seconds, 0 for none."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or a positive number")
    return seconds or None


def _uint32(text: str) -> int:
    """A domain id, MFN or event channel: a 32-bit unsigned decimal."""
    try:
        number = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if not 0 <= number < 2 ** 32:
        raise argparse.ArgumentTypeError("out of range: %s" % text)
    return number


def _positive(text: str) -> int:
    """``--count``: at least 1."""
    number = _uint32(text)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _add_json(parser: argparse.ArgumentParser) -> None:
    """``--json`` after the subcommand; the global one is the default."""
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS,
                        help="machine-readable output (like the global "
                             "--json)")


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """Options given before the subcommand."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH",
                       help="the daemon's Unix socket (default: "
                            "$XENSTORED_PATH, $XENSTORED_RUNDIR/socket or "
                            "/var/run/xenstored/socket)")
    where.add_argument("--xenbus", metavar="PATH", nargs="?", const="",
                       help="use the XenBus device instead (default PATH: "
                            "/dev/xen/xenbus)")
    parser.add_argument("--timeout", metavar="SECONDS", type=_timeout,
                        default=DEFAULT_TIMEOUT,
                        help="how long to wait for each reply and, for "
                             "watch, for each event; 0 waits forever "
                             "(default: %g)" % DEFAULT_TIMEOUT)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log messages (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="fewer log messages (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="JSON output: values are strings when valid "
                             "UTF-8, else {\"base64\": ...}")
    parser.add_argument("--version", action="version",
                        version="pyxs %s" % __version__)


def _add_node_commands(sub: Any) -> None:
    """read, write, ls, list, rm, mkdir, exists, perms, chmod, watch."""
    p = sub.add_parser("read", help="print values")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.add_argument("-R", "--raw", action="store_true",
                   help="print the bytes unescaped")
    _add_json(p)
    p.set_defaults(handler=cmd_read)

    p = sub.add_parser("write", help="write values (PATH VALUE pairs)")
    p.add_argument("pairs", metavar="PATH VALUE", nargs="+")
    p.set_defaults(handler=cmd_write)

    p = sub.add_parser("ls", help="print the tree below PATH with values")
    p.add_argument("path", metavar="PATH", nargs="?", default="/")
    p.add_argument("-f", "--flat", action="store_true",
                   help="full paths instead of an indented tree")
    _add_json(p)
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("list", help="print the names of PATH's children")
    p.add_argument("path", metavar="PATH")
    _add_json(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("rm", help="remove paths and their subtrees")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.set_defaults(handler=cmd_rm)

    p = sub.add_parser("mkdir", help="create paths")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.set_defaults(handler=cmd_mkdir)

    p = sub.add_parser("exists", help="exit 0 if PATH exists, else 1")
    p.add_argument("path", metavar="PATH")
    _add_json(p)
    p.set_defaults(handler=cmd_exists)

    p = sub.add_parser("perms", help="print PATH's permissions")
    p.add_argument("path", metavar="PATH")
    _add_json(p)
    p.set_defaults(handler=cmd_perms)

    p = sub.add_parser("chmod", help="set PATH's permissions (owner first)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("perms", metavar="PERM", nargs="+",
                   help="<r|w|b|n><domid>: read, write, both, none")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also every node below PATH")
    p.set_defaults(handler=cmd_chmod)

    p = sub.add_parser("watch", help="print 'path token' for each change")
    p.add_argument("paths", metavar="PATH", nargs="+",
                   help="a path, @introduceDomain or @releaseDomain")
    p.add_argument("-n", "--count", metavar="N", type=_positive,
                   help="stop after N events (the first one fires at once)")
    _add_json(p)
    p.set_defaults(handler=cmd_watch)


def _add_domain_commands(sub: Any) -> None:
    """domain-path, introduce, release."""
    p = sub.add_parser("domain-path", help="print a domain's home path")
    p.add_argument("domid", metavar="DOMID", type=_uint32)
    _add_json(p)
    p.set_defaults(handler=cmd_domain_path)

    p = sub.add_parser("introduce", help="introduce a domain to xenstored")
    p.add_argument("domid", metavar="DOMID", type=_uint32)
    p.add_argument("mfn", metavar="MFN", type=_uint32)
    p.add_argument("evtchn", metavar="EVTCHN", type=_uint32)
    p.set_defaults(handler=cmd_introduce)

    p = sub.add_parser("release", help="make xenstored forget a domain")
    p.add_argument("domid", metavar="DOMID", type=_uint32)
    p.set_defaults(handler=cmd_release)


def _add_sandbox(sub: Any) -> None:
    """sandbox [--daemon KIND] [--] [COMMAND ...]."""
    from .testing import DAEMON_KINDS, DEFAULT_RELEASE, XEN_RELEASES
    p = sub.add_parser(
        "sandbox", help="run COMMAND with a fresh, private daemon",
        usage="%(prog)s [-h] [--daemon KIND] [--xen RELEASE] [--] "
              "[COMMAND [ARG ...]]",
        description="Starts a fresh daemon, runs COMMAND with "
                    "XENSTORED_PATH pointing at it and exits with its "
                    "status; without COMMAND, prints the socket and waits "
                    "for Ctrl-C. The daemon is always stopped.")
    p.add_argument("--daemon", choices=DAEMON_KINDS, default="embedded",
                   help="which daemon to start (default: embedded)")
    p.add_argument("--xen", choices=XEN_RELEASES, metavar="RELEASE",
                   help="the Xen release of that daemon (%s; default %s)"
                   % (", ".join(XEN_RELEASES), DEFAULT_RELEASE))
    p.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER,
                   help="the command and its arguments")
    p.set_defaults(handler=None)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyxs`` command."""
    parser = argparse.ArgumentParser(
        prog="pyxs", description="Read, write and watch XenStore.")
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    sub.required = True
    _add_node_commands(sub)
    _add_domain_commands(sub)
    _add_sandbox(sub)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> List[str]:
    """The subcommand names of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _normalise(argv: List[str], commands: List[str]) -> List[str]:
    """A bare ``--xenbus`` right before the command means the default
    device, not a device named like the command."""
    argv = list(argv)
    for index, arg in enumerate(argv[:-1]):
        if arg == "--":
            break
        if arg == "--xenbus" and argv[index + 1] in commands:
            argv[index] = "--xenbus="
            break
    return argv


# -- running ------------------------------------------------------------------

class _StderrHandler(logging.Handler):
    """Logs to whatever ``sys.stderr`` is at the time of each message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """Sends pyxs's log messages to stderr: WARNING, -v INFO, -vv DEBUG."""
    logger = logging.getLogger("pyxs")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(
        "%(name)s: %(levelname)s: %(message)s"))
    level = max(logging.DEBUG, logging.WARNING - 10 * verbosity)
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _client(args: argparse.Namespace) -> Client:
    """A client for the socket or device the options name."""
    if args.socket is None and args.xenbus is not None:
        device = args.xenbus or default_xenbus_path()
        log.debug("using XenBus device %s", device)
        return Client(xen_bus_path=device, timeout=args.timeout)
    return Client(unix_socket_path=args.socket, timeout=args.timeout)


def _error(message: str) -> None:
    """Prints ``pyxs: message`` on stderr."""
    sys.stderr.write("pyxs: %s\n" % message)
    sys.stderr.flush()


def describe(exc: PyXSError) -> str:
    """A one-line message for an error: ``PATH: strerror (ENAME)``."""
    number, text = exc.errno, exc.strerror
    if number is None or not isinstance(text, str):
        return str(exc)
    name = errno.errorcode.get(number, str(number)) \
        if isinstance(number, int) else number
    path = exc.path
    subject = (_text(path) if isinstance(path, bytes) else path) \
        if path is not None else \
        (exc.op or "").lower().replace("_", "-")
    return "%s: %s (%s)" % (subject, text, name) if subject else \
        "%s (%s)" % (text, name)


def exit_code(exc: PyXSError) -> int:
    """The exit status for an error."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_CONNECTION
    if isinstance(exc, ValueError):
        return EXIT_USAGE  # refused before anything was sent
    return EXIT_ERROR


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuses bad paths and permissions before connecting."""
    check = validate_watch_path if args.command_name == "watch" \
        else validate_path
    paths = list(getattr(args, "paths", None) or []) + \
        list(getattr(args, "pairs", [])[::2])
    if getattr(args, "path", None) is not None:
        paths.append(args.path)
    for path in paths:
        check(path)
    if getattr(args, "perms", None) is not None:
        validate_perms(args.perms)


def _dispatch(args: argparse.Namespace) -> int:
    """Runs the subcommand, connected when it needs a client."""
    if args.handler is None:
        return cmd_sandbox(args)
    _check_arguments(args)
    client = _client(args)
    log.debug("connecting: %r", client)
    with client:
        status: int = args.handler(client, args)
        return status


def _silence_stdout() -> None:
    """After a broken pipe: send what is left of stdout nowhere."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _run(args: argparse.Namespace) -> int:
    """Runs the subcommand; turns expected failures into exit statuses."""
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Terminated:
        return EXIT_TERMINATED
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except PyXSError as exc:
        _error(describe(exc))
        return exit_code(exc)
    except RuntimeError as exc:  # ProvisionError: a daemon cannot start
        from .testing import ProvisionError
        if not isinstance(exc, ProvisionError):
            raise
        _error(str(exc))
        return EXIT_CONNECTION


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``pyxs`` command; returns its exit status.

    :param argv: the arguments, without the program name; ``sys.argv[1:]``
        when not given.
    """
    parser = build_parser()
    argv = _normalise(list(sys.argv[1:] if argv is None else argv),
                      _subcommands(parser))
    try:
        args = parser.parse_args(argv)
        if args.command_name == "write" and len(args.pairs) % 2:
            parser.error("write needs PATH VALUE pairs")
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    with _logging(args.verbose - args.quiet):
        return _run(args)
