"""The ``pyxs`` command: XenStore from the shell, like Xen's ``xenstore-*``.

::

    pyxs write /vm/1/state running
    pyxs read /vm/1/state
    pyxs ls -f /local/domain/0
    pyxs sandbox -- ./my-test-suite

:func:`main` is the entry point; it returns the exit status (0 success, 1 a
daemon error or ``exists`` false, 2 a usage error, 3 a connection or timeout
problem, 130 Ctrl-C) instead of exiting, so it can be called from Python.

Start-up time matters for a command run from shell loops: this package
imports only what the command at hand needs (the parser is hand-written,
one-request commands skip :class:`pyxs.Client`; see ``_session``).
"""

import sys

from ._output import escape, json_value, unescape
from ._parse import UsageError, command_help, parse, usage_line
from ._spec import COMMANDS, EXIT_CODES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Sequence

__all__ = ["main", "escape", "unescape", "json_value", "describe",
           "exit_code", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
           "EXIT_CONNECTION", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

EXIT_OK = 0
EXIT_ERROR = 1          # an error reply from the daemon; ``exists`` false
EXIT_USAGE = 2          # bad command line or argument
EXIT_CONNECTION = 3     # no daemon, connection lost, timeout
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143   # SIGTERM (sandbox)


# Commands that may run without pyxs.Client, and without logging.
_QUICK = ("read", "write", "exists", "rm", "mkdir")


class Terminated(Exception):
    """Raised by the SIGTERM handler of ``sandbox``."""


def error_line(message: str) -> None:
    """Prints ``pyxs: message`` on stderr."""
    sys.stderr.write("pyxs: %s\n" % message)
    sys.stderr.flush()


def describe(exc: "Any") -> str:
    """A one-line message for an error: ``PATH: strerror (ENAME)``."""
    import errno

    from ..exceptions import UnsupportedOperation
    number, text = exc.errno, exc.strerror
    if number is None or not isinstance(text, str):
        return str(exc)
    name = errno.errorcode.get(number, str(number)) \
        if isinstance(number, int) else number
    path = exc.path
    subject = (path.decode("utf-8", "backslashreplace")
               if isinstance(path, bytes) else path) if path is not None \
        else (exc.op or "").lower().replace("_", "-")
    line = "%s: %s (%s)" % (subject, text, name) if subject else \
        "%s (%s)" % (text, name)
    reason = getattr(exc, "reason", None)
    if isinstance(exc, UnsupportedOperation) and reason:
        line += ": %s" % reason
    return line


def exit_code(exc: "Any") -> int:
    """The exit status for a :class:`~pyxs.exceptions.PyXSError`."""
    from ..exceptions import ConnectionError, TimeoutError
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_CONNECTION
    if isinstance(exc, ValueError):
        return EXIT_USAGE  # refused before anything was sent
    return EXIT_ERROR


def _usage_error(exc: "UsageError") -> int:
    command = COMMANDS.get(exc.command or "")
    prefix = "pyxs %s" % command.name if command else "pyxs"
    sys.stderr.write("%s\n%s: %s\nTry '%s --help' for more.\n" % (
        usage_line(command), prefix, exc, prefix))
    return EXIT_USAGE


def _silence_stdout() -> None:
    """After a broken pipe: send what is left of stdout nowhere."""
    import os
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _handler(spec: str) -> "Any":
    import importlib
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module("." + module, __name__), function)


def _run(command: "Any", args: "Dict[str, Any]") -> int:
    """Runs the command; turns expected failures into exit statuses."""
    from ..exceptions import PyXSError
    try:
        status: int = _handler(command.handler)(args)
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Terminated:
        return EXIT_TERMINATED
    except BrokenPipeError:
        import signal
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except UsageError as exc:
        return _usage_error(exc)
    except PyXSError as exc:
        error_line(describe(exc))
        return exit_code(exc)
    except RuntimeError as exc:  # ProvisionError: a daemon cannot start
        from ..testing import ProvisionError
        if not isinstance(exc, ProvisionError):
            raise
        error_line(str(exc))
        return EXIT_CONNECTION


def main(argv: "Optional[Sequence[str]]" = None) -> int:
    """Runs the ``pyxs`` command; returns its exit status.

    :param argv: the arguments, without the program name; ``sys.argv[1:]``
        when not given.
    """
    try:
        parsed = parse(list(sys.argv[1:] if argv is None else argv),
                       COMMANDS)
    except UsageError as exc:
        return _usage_error(exc)
    if parsed.version:
        from .. import __version__
        sys.stdout.write("pyxs %s\n" % __version__)
        return EXIT_OK
    if parsed.help:
        sys.stdout.write(command_help(parsed.command, COMMANDS, EXIT_CODES))
        return EXIT_OK
    assert parsed.command is not None
    verbosity = parsed.args["verbose"] - parsed.args["quiet"]
    if verbosity or parsed.command.name not in _QUICK:
        from ._logs import logging_to_stderr
        with logging_to_stderr(verbosity):
            return _run(parsed.command, parsed.args)
    return _run(parsed.command, parsed.args)
