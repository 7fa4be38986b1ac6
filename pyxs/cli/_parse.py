"""The command line parser of ``pyxs``: small, hand-written, fast to import.

argparse alone costs more start-up time than ``pyxs read`` may take (see
benchmarks/startup.py), so commands are described by :class:`Command` and
:class:`Option` tables (``_spec``) and parsed here. Rules, as an operator
expects them from getopt tools:

* global options (:data:`GLOBAL_OPTIONS`) go anywhere: before the command
  or among its arguments (``pyxs read /x --timeout 2``);
* short flags cluster (``-fp``); a value follows its option (``-n 3``,
  ``-n3``, ``--count 3``, ``--count=3``);
* ``--`` ends the options; an argument that looks like a negative number
  is an argument, not an option;
* a command whose last argument is a command line (``sandbox``,
  ``control``) takes everything from its first argument on unparsed.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Option", "Positional", "Command", "UsageError", "Parsed",
           "parse", "GLOBAL_OPTIONS", "usage_line", "command_help"]


class UsageError(Exception):
    """A bad command line; ``command`` is the subcommand it concerns."""

    def __init__(self, message: str, command: "Optional[str]" = None) -> None:
        super().__init__(message)
        self.command = command


class _Record:
    """A small record with keyword defaults (a NamedTuple costs start-up
    time: each one is a class made at import)."""

    __slots__: "Tuple[str, ...]" = ()
    _defaults: "Dict[str, Any]" = {}

    def __init__(self, *args: "Any", **kwargs: "Any") -> None:
        values = dict(self._defaults)
        values.update(zip(self.__slots__, args))
        values.update(kwargs)
        for name in self.__slots__:
            setattr(self, name, values[name])


class Option(_Record):
    """One option: its names, where it goes and what it takes; a
    ``metavar`` makes it take a value, ``counts`` a repeatable flag that
    counts (``-v -v``)."""

    __slots__ = ("names", "dest", "help", "metavar", "convert", "counts",
                 "default")
    _defaults = {"metavar": "", "convert": None, "counts": False,
                 "default": None}
    names: "Sequence[str]"
    dest: str
    help: str
    metavar: str
    convert: "Optional[Callable[[str], Any]]"
    counts: bool
    default: "Any"


class Positional(_Record):
    """One positional argument; ``many`` takes one or more (``"+"``), any
    number (``"*"``), zero or one (``"?"``), or the rest of the line
    unparsed from its first word on (``"..."``; ``"*..."`` if it may be
    empty)."""

    __slots__ = ("dest", "metavar", "many", "help", "default")
    _defaults = {"many": "", "help": "", "default": None}
    dest: str
    metavar: str
    many: str
    help: str
    default: "Any"


class Command(_Record):
    """A subcommand: its arguments, help text and handler
    (``"module:function"`` below ``pyxs.cli``, imported when it runs);
    with ``pairs``, its arguments are PATH VALUE pairs."""

    __slots__ = ("name", "summary", "description", "handler", "options",
                 "positionals", "examples", "exit_codes", "pairs")
    _defaults = {"options": (), "positionals": (), "examples": (),
                 "exit_codes": "", "pairs": False}
    name: str
    summary: str
    description: str
    handler: str
    options: "Sequence[Option]"
    positionals: "Sequence[Positional]"
    examples: "Sequence[str]"
    exit_codes: str
    pairs: bool


class Parsed:
    """What :func:`parse` found."""

    __slots__ = ("command", "args", "help", "version")

    def __init__(self, command: "Optional[Command]", args: "Dict[str, Any]",
                 help: bool, version: bool) -> None:
        self.command = command
        self.args = args
        self.help = help
        self.version = version


def _seconds(text: str) -> "Optional[float]":
    """``--timeout``: seconds, 0 for none."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("not a number: %r" % text) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError("must be 0 or a positive number, not %r" % text)
    return seconds or None


GLOBAL_OPTIONS = (
    Option(("--socket",), "socket", "the daemon's Unix socket (default: "
           "$XENSTORED_PATH, $XENSTORED_RUNDIR/socket or "
           "/var/run/xenstored/socket)", "PATH"),
    Option(("--xenbus",), "xenbus", "use the XenBus device, as guests do; "
           "--xenbus=PATH names one (default /dev/xen/xenbus)", "[PATH]"),
    Option(("--timeout",), "timeout", "seconds to wait for each reply; 0 "
           "waits forever (default: 10)", "SECONDS", _seconds,
           default=10.0),
    Option(("-v", "--verbose"), "verbose", "more log messages on stderr "
           "(repeatable)", counts=True, default=0),
    Option(("-q", "--quiet"), "quiet", "fewer log messages (repeatable)",
           counts=True, default=0),
    Option(("--json",), "json", "JSON output: values are strings when "
           "valid UTF-8, else {\"base64\": ...}", default=False),
)
_HELP = ("-h", "--help")


def _find(options: "Sequence[Option]", name: str) -> "Optional[Option]":
    for option in options:
        if name in option.names:
            return option
    return None


def _is_number(arg: str) -> bool:
    return arg[1:].replace(".", "", 1).isdigit()


class _State:
    """What parsing has found so far."""

    def __init__(self, commands: "Dict[str, Command]") -> None:
        self.commands = commands
        self.command: Optional[Command] = None
        self.args: Dict[str, Any] = {}
        self.positional: List[str] = []
        self.help = self.version = False
        for option in GLOBAL_OPTIONS:
            self.args[option.dest] = option.default
        self.args["given"] = set()  # the dests given on the command line

    def options(self) -> "List[Option]":
        return list(GLOBAL_OPTIONS) + list(
            self.command.options if self.command else ())

    def fail(self, message: str) -> "UsageError":
        return UsageError(message, self.command.name if self.command
                          else None)

    def store(self, option: "Option", name: str,
              value: "Optional[str]") -> None:
        self.args["given"].add(option.dest)
        if option.counts:
            self.args[option.dest] += 1
        elif not option.metavar:
            self.args[option.dest] = True
        else:
            assert value is not None
            try:
                self.args[option.dest] = option.convert(value) \
                    if option.convert else value
            except ValueError as exc:
                raise self.fail("%s: %s" % (name, exc)) from None


def _long(state: "_State", arg: str, rest: "List[str]") -> None:
    name, equals, value = arg.partition("=")
    if name == "--version" and state.command is None:
        state.version = True
        return
    option = _find(state.options(), name)
    if option is None:
        raise state.fail("unknown option %s" % name)
    if name == "--xenbus":  # the value is optional: only --xenbus=PATH
        # (or, before the command, a next argument that is no command)
        if not equals and state.command is None and rest and \
                rest[0] not in state.commands and not rest[0].startswith("-"):
            value = rest.pop(0)
        state.args["xenbus"] = value or ""
        return
    if option.metavar and not equals:
        if not rest:
            raise state.fail("%s needs a value (%s)" % (name, option.metavar))
        value = rest.pop(0)
    elif equals and not option.metavar:
        raise state.fail("%s takes no value" % name)
    state.store(option, name, value)


def _short(state: "_State", arg: str, rest: "List[str]") -> None:
    letters = arg[1:]
    while letters:
        name, letters = "-" + letters[0], letters[1:]
        if name == "-h":
            state.help = True
            continue
        option = _find(state.options(), name)
        if option is None:
            raise state.fail("unknown option %s" % name)
        value = None
        if option.metavar:
            if letters:
                value, letters = letters, ""
            elif rest:
                value = rest.pop(0)
            else:
                raise state.fail("%s needs a value (%s)"
                                 % (name, option.metavar))
        state.store(option, name, value)


def _takes_rest(state: "_State") -> bool:
    """True once a command that takes a command line has its first word."""
    command = state.command
    return command is not None and bool(state.positional) and any(
        p.many.endswith("...") for p in command.positionals)


def parse(argv: "Sequence[str]", commands: "Dict[str, Command]") -> "Parsed":
    """Parses ``argv`` (without the program name)."""
    state = _State(commands)
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if _takes_rest(state):
            state.positional += [arg] + rest
            break
        if arg == "--":
            state.positional += rest
            break
        if arg in _HELP:
            state.help = True
        elif arg.startswith("--"):
            _long(state, arg, rest)
        elif arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            _short(state, arg, rest)
        elif state.command is None:
            if arg == "help":
                state.help = True
                if rest and rest[0] in commands:
                    state.command = commands[rest.pop(0)]
                continue
            if arg not in commands:
                raise UsageError("unknown command %r" % arg)
            state.command = commands[arg]
            for option in state.command.options:
                state.args.setdefault(option.dest, option.default)
        else:
            state.positional.append(arg)
    if state.help or state.version:
        return Parsed(state.command, state.args, state.help, state.version)
    if state.command is None:
        raise UsageError("no command given")
    if state.args["socket"] is not None and state.args["xenbus"] is not None:
        raise state.fail("--socket and --xenbus exclude each other")
    _assign(state, state.command)
    return Parsed(state.command, state.args, False, False)


def _assign(state: "_State", command: "Command") -> None:
    """Gives the positional arguments to the command's positionals."""
    words = state.positional
    if command.pairs:
        if not words or len(words) % 2:
            raise state.fail("needs PATH VALUE pairs")
        state.args["pairs"] = list(zip(words[::2], words[1::2]))
        return
    fixed = [p for p in command.positionals if p.many in ("", "+")]
    for index, spec in enumerate(command.positionals):
        if spec.many == "":
            if not words:
                raise state.fail("missing %s" % spec.metavar)
            state.args[spec.dest] = words.pop(0)
        elif spec.many == "?":
            later = sum(1 for p in fixed if command.positionals.index(p) >
                        index)
            state.args[spec.dest] = words.pop(0) if len(words) > later \
                else spec.default
        else:  # "+", "*", "...": all but what later positionals need
            later = len(command.positionals) - index - 1
            taken = words[:len(words) - later] if later else list(words)
            del words[:len(taken)]
            if spec.many in ("+", "...") and not taken:
                raise state.fail("missing %s" % spec.metavar)
            state.args[spec.dest] = taken
    if words:
        raise state.fail("unexpected argument %r" % words[0])


# -- help ---------------------------------------------------------------------

def _option_usage(option: "Option") -> str:
    name = option.names[0]
    return "[%s%s]" % (name, " " + option.metavar if option.metavar and
                       not option.metavar.startswith("[") else "")


def usage_line(command: "Optional[Command]") -> str:
    """``usage: pyxs CMD [-x] ARG...``."""
    if command is None:
        return "usage: pyxs [GLOBAL OPTIONS] COMMAND [ARGS...]"
    words = ["usage: pyxs", command.name] + [
        _option_usage(option) for option in command.options]
    if command.pairs:
        words.append("PATH VALUE [PATH VALUE ...]")
    for spec in command.positionals:
        words.append({"": "%s", "?": "[%s]", "+": "%s...", "*": "[%s...]",
                      "...": "%s [ARG...]", "*...": "[%s [ARG...]]"}[
                          spec.many] % spec.metavar)
    return " ".join(words)


def _option_lines(options: "Sequence[Option]") -> "List[str]":
    lines = []
    for option in options:
        names = ", ".join(option.names)
        if option.metavar:
            names += " " + option.metavar
        lines.append("  %-22s %s" % (names, option.help)
                     if len(names) <= 22 else
                     "  %s\n  %-22s %s" % (names, "", option.help))
    return lines


def command_help(command: "Optional[Command]",
                 commands: "Dict[str, Command]", exit_codes: str) -> str:
    """The text of ``pyxs --help`` or ``pyxs CMD --help``."""
    lines = [usage_line(command), ""]
    if command is None:
        lines += ["Read, write and watch XenStore, like Xen's xenstore-* "
                  "tools.", "", "commands:"]
        lines += ["  %-14s %s" % (c.name, c.summary)
                  for c in commands.values()]
        lines += ["", "'pyxs COMMAND --help' (or 'pyxs help COMMAND') "
                  "describes one."]
    else:
        lines += [command.description]
        args = [p for p in command.positionals if p.help]
        if args:
            lines += ["", "arguments:"] + [
                "  %-22s %s" % (p.metavar, p.help) for p in args]
        if command.options:
            lines += ["", "options:"] + _option_lines(command.options)
    lines += ["", "global options (anywhere on the line):"]
    lines += _option_lines(GLOBAL_OPTIONS)
    lines += ["  %-22s %s" % ("-h, --help", "show this help and exit")]
    if command is None:
        lines += ["  %-22s %s" % ("--version", "show the version and exit")]
    if command is not None and command.examples:
        lines += ["", "examples:"] + ["  " + e for e in command.examples]
    lines += ["", "exit status:", (command.exit_codes if command is not None
                                   and command.exit_codes else exit_codes)]
    return "\n".join(lines) + "\n"
