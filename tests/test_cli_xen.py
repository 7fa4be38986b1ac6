"""The ``pyxs`` command next to Xen's ``xenstore-*`` tools, on one daemon.

The table of docs/cli.rst (xenstore-utils command -> pyxs command) is read
from the document and every row is run both ways on the same tree: same
output, same exit status, same store afterwards. Pipelines mix the two.
"""

import os
import re
import shlex
import subprocess
import sys
from typing import Any, List, Tuple

import pytest

from pyxs import Client
from pyxs.testing import XenStoreDaemon

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^``(xenstore-[^`]+)``\s+``(pyxs [^`]+)``")


def table_rows() -> List[Tuple[str, str]]:
    with open(os.path.join(REPO, "docs", "cli.rst")) as doc:
        return [ROW.match(line).groups() for line in doc  # type: ignore
                if ROW.match(line)]


ROWS = table_rows()


def test_the_table_is_found():
    assert len(ROWS) >= 20
    tools = {shlex.split(xen)[0] for xen, _ in ROWS}
    assert {"xenstore-read", "xenstore-write", "xenstore-ls",
            "xenstore-list", "xenstore-rm", "xenstore-chmod",
            "xenstore-watch", "xenstore-exists",
            "xenstore-control"} <= tools


def seed(client: Client) -> None:
    client.delete(b"/vm")
    client.write(b"/vm/1/state", b"running")
    client.write(b"/vm/1/note", b"two\nlines\t\\ \x01\xff")
    client.write(b"/vm/2/a/b", b"")


def dump(client: Client) -> List[Tuple[bytes, bytes, List[bytes]]]:
    return sorted((path, value, client.get_perms(path))
                  for path, value, _ in client.walk(b"/vm"))


def run_pyxs(daemon: XenStoreDaemon, *argv: str, **kwargs: Any
             ) -> "subprocess.CompletedProcess[bytes]":
    env = dict(os.environ, XENSTORED_PATH=daemon.socket_path,
               PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "pyxs"] + list(argv),
                          env=env, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kwargs)


@pytest.mark.parametrize("xen, ours", ROWS, ids=[x for x, _ in ROWS])
def test_table_row(daemon, client, xen, ours, record_property):
    words = shlex.split(xen)
    if daemon.tool_xen().tool(words[0]) is None:
        # Xen 4.22 built from source has no xenstore-control: use the
        # default release's, talking to this daemon all the same.
        from pyxs.testing import find_xen
        xen_install = find_xen()
        command = xen_install.command(xen_install.tool(words[0]))
        env = dict(os.environ, **xen_install.environ(),
                   XENSTORED_PATH=daemon.socket_path)
        run = lambda: subprocess.run(  # noqa: E731
            command + words[1:], env=env, capture_output=True, timeout=60)
    else:
        run = lambda: daemon.run_tool(*words)  # noqa: E731
    seed(client)
    theirs = run()
    their_store = dump(client)
    seed(client)
    mine = run_pyxs(daemon, *shlex.split(ours)[1:])
    my_store = dump(client)
    assert mine.returncode == theirs.returncode, (theirs, mine)
    if theirs.returncode == 0:
        assert mine.stdout == theirs.stdout
        assert mine.stderr == b""
    else:
        assert mine.stdout == theirs.stdout == b""
        if theirs.stderr:  # a failure, not exists' "no"
            assert mine.stderr.startswith(b"pyxs: ")
        else:
            assert mine.stderr == b""
    assert my_store == their_store


VALUES = [b"plain", b"two\nlines", b"tab\there", b"back\\slash",
          b"\x00\x01\x1f\x7f\x80\xff", b'quote " and \\"', b"", b"x" * 2000]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_pipelines_both_ways(daemon, client, value):
    client.write(b"/p/orig", value)
    # xenstore-read | pyxs write: the value comes back unchanged...
    read = daemon.run_tool("xenstore-read", "/p/orig", check=True)
    line = read.stdout[:-1]
    assert run_pyxs(daemon, "write", "/p/copy", line).returncode == 0
    assert client.read(b"/p/copy") == value
    # ... and pyxs read | xenstore-write too; both escape alike.
    ours = run_pyxs(daemon, "read", "/p/orig")
    assert ours.stdout == read.stdout
    daemon.run_tool("xenstore-write", "/p/back", ours.stdout[:-1],
                    check=True)
    assert client.read(b"/p/back") == value
    # Raw output is the bytes themselves.
    assert run_pyxs(daemon, "read", "-R", "/p/orig").stdout == value


def test_ls_escapes_quotes_unambiguously(daemon, client):
    client.write(b"/q/v", b'say "hi"')
    assert run_pyxs(daemon, "ls", "/q").stdout == b'v = "say \\"hi\\""\n'
    theirs = daemon.run_tool("xenstore-ls", "/q").stdout
    assert theirs == b'v = "say "hi""\n'   # Xen's is ambiguous


def test_ls_p_long_lines(daemon, client):
    client.write(b"/l/key", b"v" * 60)
    client.set_perms(b"/l/key", [b"b0", b"r3"])
    theirs = daemon.run_tool("xenstore-ls", "-p", "/l", check=True)
    assert run_pyxs(daemon, "ls", "-p", "/l").stdout == theirs.stdout
    assert theirs.stdout.endswith(b'"   (b0,r3)\n')
    # Longer than 80 columns: Xen's tool cuts the value, pyxs does not.
    client.write(b"/l/key", b"v" * 100)
    theirs = daemon.run_tool("xenstore-ls", "-p", "/l", check=True)
    assert b"\\..." in theirs.stdout
    assert run_pyxs(daemon, "ls", "-p", "/l").stdout == \
        b'key = "%s"   (b0,r3)\n' % (b"v" * 100)


# -- features, quotas, watch depth (Xen 4.21 and later) -----------------------

def new_protocol(daemon: XenStoreDaemon) -> bool:
    return daemon.kind == "embedded" or daemon.release == "4.22"


def test_features_and_quota(daemon, client):
    features = run_pyxs(daemon, "features")
    quota = run_pyxs(daemon, "quota", "nodes")
    depth = run_pyxs(daemon, "watch", "-n", "1", "--depth", "1", "/w")
    # pyxs filters events by depth itself where the daemon cannot.
    assert (depth.returncode, depth.stdout) == (0, b"/w /w\n")
    if not new_protocol(daemon):
        for result in (features, quota):
            assert result.returncode == 1, result
            assert b"(ENOSYS)" in result.stderr or \
                b"lacks" in result.stderr, result.stderr
        return
    assert features.returncode == 0, features
    value = int(features.stdout.split()[0])
    assert value == int(client.get_features())
    assert quota.stdout == b"%d\n" % client.get_quota("nodes")
    assert run_pyxs(daemon, "quota", "-d", "0", "nodes", "1234"
                    ).returncode == 0
    assert client.get_quota("nodes", 0) == 1234
    listing = run_pyxs(daemon, "quota").stdout.decode().splitlines()
    assert [line.split()[0] for line in listing] == client.quota_names()


# -- sandbox ------------------------------------------------------------------

def sandbox(*argv: str) -> "subprocess.CompletedProcess[bytes]":
    env = dict(os.environ)
    env.pop("XENSTORED_PATH", None)
    env.pop("PYTHONPATH", None)
    env["PATH"] = "/usr/bin:/bin"   # no venv: the sandbox provides pyxs
    return subprocess.run([sys.executable, "-m", "pyxs", "sandbox"] +
                          list(argv), env=env, capture_output=True,
                          timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


def test_sandbox_offers_pyxs_and_xen_tools():
    result = sandbox("--", "sh", "-c", "pyxs read /local/domain/0/name && "
                     "xenstore-ls /local/domain && xenstore-write /x 1 && "
                     "pyxs read /x")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == (b"Domain-0\n0 = \"\"\n domid = \"0\"\n"
                             b" name = \"Domain-0\"\n1\n")


def test_sandbox_bare_store(daemon_kind):
    from conftest import sandbox_args
    result = sandbox(*sandbox_args(daemon_kind), "--bare", "--", "sh", "-c",
                     "pyxs exists /local/domain/0/name; echo $?")
    assert (result.returncode, result.stdout) == (0, b"1\n")
