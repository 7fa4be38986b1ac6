"""The ``pyxs`` commands: arguments, help, examples and handlers.

Options keep the letters and meanings of Xen's ``xenstore-*`` tools
(``read -p``, ``read -R``, ``ls -f``/``-p``, ``list -p``, ``rm -t``,
``chmod -r``/``-u``, ``watch -n``); ``-s`` (their "use the socket", a no-op
in libxenstore for years) is accepted and ignored.
"""

from ._parse import Command, Option, Positional

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

__all__ = ["COMMANDS", "EXIT_CODES", "uint32"]

EXIT_CODES = """\
  0    success
  1    the daemon refused (ENOENT, EACCES, ...); exists: a path is missing
  2    usage error: bad option or argument, invalid path (nothing sent)
  3    no daemon, connection lost, no reply within --timeout; sandbox: the
       daemon could not start
  130  Ctrl-C; 141 the output's reader went away; 143 SIGTERM (sandbox)"""


def uint32(text: str) -> int:
    """A domain id, MFN, event channel or quota: a 32-bit unsigned int."""
    try:
        number = int(text, 0)
    except ValueError:
        raise ValueError("not a number: %r" % text) from None
    if not 0 <= number < 2 ** 32:
        raise ValueError("out of range: %s" % text)
    return number


def _positive(text: str) -> int:
    number = uint32(text)
    if number < 1:
        raise ValueError("must be at least 1, not %s" % text)
    return number


_SOCKET = Option(("-s",), "socket_flag", "ignored (xenstore-*'s 'use the "
                 "socket')", default=False)
_DOMID = Option(("-d", "--domid"), "domid", "of this domain, not the "
                "global default", "DOMID", uint32)


_NODES = [
    Command("read", "print values (xenstore-read)",
         "Prints the value of each PATH on a line of its own, escaped as "
         "xenstore-read escapes it (\\n, \\t, \\r, \\\\, \\NNN octal for "
         "other control bytes, \\xNN from 0x7f), so 'pyxs write' and "
         "xenstore-write read it back unchanged. All values are read "
         "before anything is printed.",
         "_nodes:cmd_read",
         [Option(("-p", "--path"), "print_path", "print 'PATH: value'",
                 default=False),
          Option(("-R", "--raw"), "raw", "print the bytes unescaped, with "
                 "no newline added", default=False), _SOCKET],
         [Positional("paths", "PATH", "+")],
         ["pyxs read /local/domain/0/name", "pyxs read -p /vm/1/state "
          "/vm/1/memory", "pyxs read -R /vm/1/blob > blob.bin",
          "pyxs --json read /vm/1/state"]),
    Command("write", "write values (xenstore-write)",
         "Writes each VALUE at its PATH, creating missing parents. VALUE "
         "is unescaped as xenstore-write does (\\xNN, \\NNN, \\n, \\t, \\r, "
         "\\\\; a backslash before any other character stands for that "
         "character); -R stores it as given. Several pairs are written in "
         "one transaction (retried on conflict): others see all or none.",
         "_nodes:cmd_write",
         [Option(("-R", "--raw"), "raw", "store VALUE as given, without "
                 "unescaping", default=False), _SOCKET],
         (), ["pyxs write /vm/1/state running /vm/1/memory 1024",
              "pyxs write /vm/1/note 'two\\nlines'"], pairs=True),
    Command("ls", "print trees with values (xenstore-ls)",
         "Prints the tree below each PATH (default /) with quoted, escaped "
         "values: one space of indentation per level, or full paths with "
         "-f; PATH itself is not shown. -p adds each node's permissions as "
         "xenstore-ls -p does. A quote in a value is escaped (\\\") so every "
         "line is unambiguous. Nothing is truncated.",
         "_nodes:cmd_ls",
         [Option(("-f", "--flat"), "flat", "full paths instead of an "
                 "indented tree", default=False),
          Option(("-p", "--perms"), "perms", "show permissions",
                 default=False), _SOCKET],
         [Positional("paths", "PATH", "*")],
         ["pyxs ls /local/domain/0", "pyxs ls -fp /vm",
          "pyxs --json ls /vm"]),
    Command("list", "print children's names (xenstore-list)",
         "Prints the names of the children of each PATH, one per line, or "
         "their full paths with -p.",
         "_nodes:cmd_list",
         [Option(("-p", "--path"), "full", "print full paths",
                 default=False), _SOCKET],
         [Positional("paths", "PATH", "+")],
         ["pyxs list /local/domain", "pyxs list -p /vm/1 /vm/2"]),
    Command("rm", "remove nodes (xenstore-rm)",
         "Removes each PATH and everything below it. A missing PATH is "
         "fine; a missing parent is an error. With -t, parents left empty "
         "(no value, no children) are removed too.",
         "_nodes:cmd_rm",
         [Option(("-t", "--tidy"), "tidy", "also remove emptied parents",
                 default=False), _SOCKET],
         [Positional("paths", "PATH", "+")],
         ["pyxs rm /vm/1/memory", "pyxs rm -t /vm/1/device/vif/0"]),
    Command("mkdir", "create nodes",
         "Creates each PATH (and missing parents) with an empty value; "
         "existing nodes keep their values.",
         "_nodes:cmd_mkdir", [], [Positional("paths", "PATH", "+")],
         ["pyxs mkdir /vm/2/device"]),
    Command("exists", "exit 0 if every PATH exists (xenstore-exists)",
         "Prints nothing and exits 0 if every PATH exists, 1 if one does "
         "not. With --json it prints true or false (for several paths an "
         "object of them); the exit status is the same.",
         "_nodes:cmd_exists", [_SOCKET],
         [Positional("paths", "PATH", "+")],
         ["pyxs exists /vm/2 && echo present"],
         "  0    every PATH exists\n  1    a PATH does not exist\n"
         "  2, 3 as for every command (see pyxs --help)"),
    Command("perms", "print permissions",
         "Prints the permissions of PATH on one line, owner first, in the "
         "form chmod takes.",
         "_nodes:cmd_perms", [], [Positional("path", "PATH")],
         ["pyxs perms /vm/1"]),
    Command("chmod", "set permissions (xenstore-chmod)",
         "Sets the permissions of PATH. Each PERM is a letter and a domain "
         "id: r read, w write, b both, n none. The first entry names the "
         "owner and what every other domain may do; later ones grant "
         "single domains.",
         "_nodes:cmd_chmod",
         [Option(("-r", "--recursive"), "recursive", "also every node "
                 "below PATH", default=False),
          Option(("-u", "--up"), "up", "also every parent of PATH (not /)",
                 default=False), _SOCKET],
         [Positional("path", "PATH"), Positional(
             "perms", "PERM", "+", "<r|w|b|n><domid>")],
         ["pyxs chmod /vm/1 n0 r5", "pyxs chmod -r /vm/1 b0",
          "pyxs chmod -u /local/domain/5/device/vif n0 r5"]),
    Command("watch", "print changes as they happen (xenstore-watch)",
         "Watches each PATH (or @introduceDomain, @releaseDomain) and "
         "prints 'path token' for each event, flushed at once; the token "
         "is the watched PATH, so it tells which watch fired. Every watch "
         "fires once when it is set. Runs until Ctrl-C, -n events, or "
         "--timeout seconds without an event.",
         "_watch:cmd_watch",
         [Option(("-n", "--count"), "count", "stop after N events",
                 "N", _positive),
          Option(("--depth",), "depth", "only changes at most N levels "
                 "below PATH (Xen 4.21's watch depth)", "N", uint32),
          Option(("--path-only",), "path_only", "print the path only, as "
                 "xenstore-watch does", default=False)],
         [Positional("paths", "PATH", "+")],
         ["pyxs watch /vm @releaseDomain", "pyxs watch -n 2 /vm/1/state",
          "pyxs watch --depth 1 /local/domain", "pyxs --json watch /vm"]),
]

_DOMAINS = [
    Command("domain-path", "print a domain's home path",
         "Prints the home path of domain DOMID.", "_domains:cmd_domain_path",
         [], [Positional("domid", "DOMID")], ["pyxs domain-path 5"]),
    Command("introduce", "introduce a domain to xenstored",
         "Tells the daemon to talk to a new domain through its store page "
         "(MFN) and event channel (privileged).", "_domains:cmd_introduce",
         [], [Positional("domid", "DOMID"), Positional("mfn", "MFN"),
              Positional("evtchn", "EVTCHN")], ["pyxs introduce 5 4096 3"]),
    Command("release", "make xenstored forget a domain",
         "Makes the daemon forget domain DOMID (privileged).",
         "_domains:cmd_release", [], [Positional("domid", "DOMID")],
         ["pyxs release 5"]),
    Command("features", "show or set XenStore features (Xen 4.21+)",
         "Prints the feature bits the daemon offers this connection, or "
         "with DOMID those of that domain: the number, then the names. "
         "With FEATURES (a number, or names joined by ',') sets them for a "
         "domain not yet introduced. Daemons older than Xen 4.21 answer "
         "with an error (exit 1).",
         "_domains:cmd_features", [],
         [Positional("domid", "DOMID", "?"), Positional(
             "features", "FEATURES", "?", "e.g. 12 or watchdepth,domid_any")],
         ["pyxs features", "pyxs features 5", "pyxs features 5 "
          "watchdepth"]),
    Command("quota", "show or set quotas (Xen 4.21+)",
         "Without NAME prints every quota as 'name value'; with NAME its "
         "value; with NAME VALUE sets it. -d DOMID works on one domain's "
         "quotas, else on the global defaults for new domains. 0 disables "
         "a check. Daemons older than Xen 4.21 answer with an error.",
         "_domains:cmd_quota", [_DOMID],
         [Positional("name", "NAME", "?"), Positional("value", "VALUE",
                                                      "?")],
         ["pyxs quota", "pyxs quota nodes", "pyxs quota -d 5 nodes 2000"]),
    Command("control", "send a control command (xenstore-control)",
         "Sends COMMAND and its ARGs to the daemon (CONTROL, formerly "
         "DEBUG) and prints the reply, as xenstore-control does. "
         "'pyxs control help' lists what the daemon offers.",
         "_domains:cmd_control", [],
         [Positional("words", "COMMAND", "...")],
         ["pyxs control help", "pyxs control log on"]),
]

_SANDBOX = Command(
    "sandbox", "run COMMAND with a fresh, private daemon",
    "Starts a fresh daemon in a private temporary directory, seeds dom0's "
    "keys (/local/domain/0/name = Domain-0, domid = 0, /local/domain "
    "readable; not with --bare), runs COMMAND with XENSTORED_PATH pointing "
    "at it and exits with its status. COMMAND finds this pyxs as 'pyxs' on "
    "its PATH and, where Xen's packages are at hand, Xen's xenstore-* "
    "tools. Without COMMAND, prints the socket and waits for Ctrl-C. The "
    "daemon is always stopped.",
    "_sandbox:cmd_sandbox",
    [Option(("--daemon",), "daemon", "xenstored, oxenstored or embedded "
            "(default)", "KIND", default="embedded"),
     Option(("--xen",), "xen", "the Xen release of that daemon (4.17, "
            "4.20, 4.22)", "RELEASE"),
     Option(("--bare",), "bare", "an empty store: no dom0 keys",
            default=False)],
    [Positional("command", "COMMAND", "*...")],
    ["pyxs sandbox -- python3 -m pytest tests/",
     "pyxs sandbox --daemon xenstored -- xenstore-ls /",
     "pyxs sandbox -- sh -c 'pyxs write /a 1 && pyxs read /a'"],
    "  the status of COMMAND (128 + N if killed by signal N; 127 not "
    "found, 126\n  not runnable); 3 the daemon could not start; 130 Ctrl-C; "
    "143 SIGTERM")

#: Every command, in the order ``pyxs --help`` lists them.
COMMANDS: "Dict[str, Command]" = {
    command.name: command for command in _NODES + _DOMAINS + [_SANDBOX]}
