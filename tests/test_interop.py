"""pyxs and libxenstore's CLI tools on one daemon: each sees what the other
did (values, listings, permissions, removals and watch events)."""

import os
import re
import select
import subprocess
import time
from typing import Dict, List, Union

import pytest

from pyxs import Client
from pyxs.testing import XenStoreDaemon

ALL_BYTES = bytes(range(256))
TIMEOUT = 30.0


def tool(daemon: XenStoreDaemon, name: str, *args: Union[str, bytes]
         ) -> bytes:
    """Runs a tool that must succeed; returns its standard output."""
    done = daemon.run_tool(name, *args)
    assert done.returncode == 0, (name, args, done.stderr)
    return done.stdout


def unescape(text: bytes) -> bytes:
    """Undoes the escaping xenstore-read and xenstore-ls apply to values."""
    def one(match: "re.Match[bytes]") -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1].isdigit():
            return bytes([int(code, 8)])
        return {b"t": b"\t", b"n": b"\n", b"r": b"\r", b"\\": b"\\"}[code]
    return re.sub(rb"\\(x[0-9a-fA-F]{2}|[0-7]{3}|[tnr\\])", one, text)


def ls_full(daemon: XenStoreDaemon, path: str, perms: bool = False
            ) -> Dict[bytes, bytes]:
    """``xenstore-ls -f [-p]`` as {path: unescaped value [+ perms]}."""
    args = ["-f", "-p", path] if perms else ["-f", path]
    nodes = {}
    for line in tool(daemon, "xenstore-ls", *args).splitlines():
        name, _, rest = line.partition(b' = "')
        nodes[name] = rest
    return nodes


def read_line(stream: "subprocess.Popen[bytes]", deadline: float) -> bytes:
    """Reads one line of a child's output without blocking past deadline."""
    fd = stream.stdout.fileno()  # type: ignore[union-attr]
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        assert ready, "no output within the deadline (got %r)" % line
        byte = os.read(fd, 1)
        assert byte, "the tool exited early (got %r)" % line
        line += byte
    return line


# -- values ----------------------------------------------------------------

def test_tool_reads_every_byte_pyxs_wrote(daemon: XenStoreDaemon,
                                          client: Client) -> None:
    client.write(b"/interop/bytes", ALL_BYTES)
    assert tool(daemon, "xenstore-read", "-R", "/interop/bytes") == ALL_BYTES
    escaped = tool(daemon, "xenstore-read", "/interop/bytes")
    assert escaped.endswith(b"\n")
    assert b"\x00" not in escaped and b"\n" not in escaped[:-1]
    assert unescape(escaped[:-1]) == ALL_BYTES


def test_pyxs_reads_what_the_tool_wrote(daemon: XenStoreDaemon,
                                        client: Client) -> None:
    raw = bytes(range(1, 256))  # argv cannot carry NUL
    tool(daemon, "xenstore-write", "-R", "/interop/raw", raw)
    assert client.read(b"/interop/raw") == raw
    tool(daemon, "xenstore-write", "/interop/escaped", r"\000a\x7f\t\n\\b",
         "/interop/second", "two words")
    assert client.read(b"/interop/escaped") == b"\x00a\x7f\t\n\\b"
    assert client.read(b"/interop/second") == b"two words"
    client.write(b"/interop/second", b"")
    assert tool(daemon, "xenstore-read", "/interop/second") == b"\n"


def test_tool_missing_node_and_pyxs_agree(daemon: XenStoreDaemon,
                                          client: Client) -> None:
    assert daemon.run_tool("xenstore-read", "/interop/none").returncode != 0
    assert client.read(b"/interop/none", b"default") == b"default"


# -- listings --------------------------------------------------------------

def test_listings_of_a_pyxs_tree(daemon: XenStoreDaemon,
                                 client: Client) -> None:
    values = {b"/interop/tree/a": b"1", b"/interop/tree/b/c": b"x y",
              b"/interop/tree/b/d": b"\x01\n\"quoted\"",
              b"/interop/tree/e": b""}
    for path, value in values.items():
        client.write(path, value)
    listed = tool(daemon, "xenstore-list", "/interop/tree").splitlines()
    assert sorted(listed) == sorted(client.list(b"/interop/tree")) == \
        [b"a", b"b", b"e"]
    assert tool(daemon, "xenstore-list", "-p", "/interop/tree/b"
                ).splitlines() == [b"/interop/tree/b/c", b"/interop/tree/b/d"]
    shown = {path: unescape(rest[:-1]) for path, rest in
             ls_full(daemon, "/interop/tree").items()}
    walked = {path: value for path, value, _ in client.walk(b"/interop/tree")
              if path != b"/interop/tree"}
    assert shown == walked == {**values, b"/interop/tree/b": b""}


def test_pyxs_lists_a_tool_tree(daemon: XenStoreDaemon,
                                client: Client) -> None:
    tool(daemon, "xenstore-write", "/interop/t/x", "1", "/interop/t/y/z", "2",
         "/interop/t/y/w", "3")
    assert sorted(client.list(b"/interop/t")) == [b"x", b"y"]
    assert sorted(client.list(b"/interop/t/y")) == [b"w", b"z"]
    walked = sorted((p, v) for p, v, _ in client.walk(b"/interop/t"))
    assert walked == [(b"/interop/t", b""), (b"/interop/t/x", b"1"),
                      (b"/interop/t/y", b""), (b"/interop/t/y/w", b"3"),
                      (b"/interop/t/y/z", b"2")]


def test_exists_both_ways(daemon: XenStoreDaemon, client: Client) -> None:
    client.write(b"/interop/here", b"1")
    assert daemon.run_tool("xenstore-exists", "/interop/here").returncode == 0
    assert daemon.run_tool("xenstore-exists", "/interop/gone").returncode == 1
    tool(daemon, "xenstore-write", "/interop/made", "1")
    assert client.exists(b"/interop/made")
    assert not client.exists(b"/interop/gone")


# -- permissions -----------------------------------------------------------

def test_pyxs_reads_permissions_set_by_the_tool(daemon: XenStoreDaemon,
                                                client: Client) -> None:
    client.write(b"/interop/p/child", b"v")
    tool(daemon, "xenstore-chmod", "/interop/p", "n5", "r6", "w7", "b8")
    assert client.get_perms(b"/interop/p") == [b"n5", b"r6", b"w7", b"b8"]
    assert client.get_perms(b"/interop/p/child") == [b"n0"]
    tool(daemon, "xenstore-chmod", "-r", "/interop/p", "b3", "r4")
    assert client.get_perms(b"/interop/p") == [b"b3", b"r4"]
    assert client.get_perms(b"/interop/p/child") == [b"b3", b"r4"]


def test_tool_shows_permissions_set_by_pyxs(daemon: XenStoreDaemon,
                                            client: Client) -> None:
    client.write(b"/interop/q/a", b"v")
    client.set_perms(b"/interop/q/a", [b"r9", b"w1", b"n2", b"b3"])
    shown = ls_full(daemon, "/interop", perms=True)
    assert shown[b"/interop/q/a"].endswith(b"(r9,w1,n2,b3)")
    assert shown[b"/interop/q"].endswith(b"(n0)")


# -- removal ---------------------------------------------------------------

def test_removal_both_ways(daemon: XenStoreDaemon, client: Client) -> None:
    client.write(b"/interop/rm/a/b", b"1")
    client.write(b"/interop/rm/keep", b"1")
    tool(daemon, "xenstore-rm", "/interop/rm/a")
    assert client.list(b"/interop/rm") == [b"keep"]
    tool(daemon, "xenstore-write", "/interop/rm2/x", "1")
    client.delete(b"/interop/rm2")
    assert daemon.run_tool("xenstore-exists", "/interop/rm2").returncode == 1
    assert daemon.run_tool("xenstore-rm", "/interop/no/such").returncode != 0


# -- watches ---------------------------------------------------------------

def _events_until(monitor: object, wanted: List[bytes]) -> List[bytes]:
    """Collects event paths until every wanted path has been seen."""
    seen: List[bytes] = []
    while not set(wanted) <= set(seen):
        seen.append(monitor.get(timeout=TIMEOUT).path)  # type: ignore
    return seen


def test_monitor_sees_tool_changes(daemon: XenStoreDaemon,
                                   client: Client) -> None:
    client.write(b"/interop/w/old", b"0")
    with client.monitor() as monitor:
        monitor.watch(b"/interop/w", b"tok")
        assert monitor.get(timeout=TIMEOUT) == (b"/interop/w", b"tok")
        tool(daemon, "xenstore-write", "/interop/w/a", "1", "/interop/w/b",
             "2")
        assert set(_events_until(monitor, [b"/interop/w/a", b"/interop/w/b"])
                   ) == {b"/interop/w/a", b"/interop/w/b"}
        tool(daemon, "xenstore-rm", "/interop/w/old")
        assert monitor.get(timeout=TIMEOUT) == (b"/interop/w/old", b"tok")
        tool(daemon, "xenstore-chmod", "/interop/w/a", "r3")
        assert monitor.get(timeout=TIMEOUT) == (b"/interop/w/a", b"tok")
        tool(daemon, "xenstore-rm", "/interop/w")
        assert monitor.get(timeout=TIMEOUT) == (b"/interop/w", b"tok")


def test_xenstore_watch_sees_pyxs_changes(daemon: XenStoreDaemon,
                                          client: Client) -> None:
    client.write(b"/interop/v/gone/x", b"1")
    watcher = daemon.spawn_tool("xenstore-watch", "-n", "5", "/interop/v",
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        # The event every new watch fires proves the watch is in place.
        assert read_line(watcher, deadline) == b"/interop/v\n"
        client.write(b"/interop/v/a", b"1")
        client.write(b"/interop/v/b/c", b"2")
        client.delete(b"/interop/v/gone")
        client.transaction()
        client.write(b"/interop/v/t", b"3")
        assert client.commit()
        out, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    # Distinct paths, so no event can coalesce with another.
    assert out.splitlines() == [b"/interop/v/a", b"/interop/v/b/c",
                                b"/interop/v/gone", b"/interop/v/t"]


@pytest.mark.parametrize("value", [b"plain", b"\x01\x02\xfe\xff", b"\\"])
def test_round_trip_through_both(daemon: XenStoreDaemon, client: Client,
                                 value: bytes) -> None:
    client.write(b"/interop/rt", value)
    text = tool(daemon, "xenstore-read", "/interop/rt")[:-1]
    tool(daemon, "xenstore-write", "/interop/rt2", text)
    assert client.read(b"/interop/rt2") == value
