"""list() of long directories and walk() against real daemons."""

import errno

import pytest
from conftest import expect
from xsassert import SendLog

from pyxs._internal import Op
from pyxs.exceptions import PyXSError

TREE = {
    b"/tree": b"root",
    b"/tree/a": b"A",
    b"/tree/a/x": b"AX",
    b"/tree/a/x/deep": b"AXD",
    b"/tree/a/y": b"\x00\xffbinary",
    b"/tree/b": b"",
    b"/tree/c": b"C",
    b"/tree/c/z": b"CZ",
}


def build(client):
    for path, value in TREE.items():
        client.write(path, value)


def reference(client, path, topdown):
    """The os.walk order, node by node with plain list() and read()."""
    children = client.list(path)
    node = (path, client.read(path), children)
    below = [item for name in children
             for item in reference(client, path + b"/" + name, topdown)]
    return [node] + below if topdown else below + [node]


def test_walk_topdown_matches_os_walk_order(client):
    build(client)
    walked = list(client.walk(b"/tree"))
    assert walked == reference(client, b"/tree", True)
    assert {path: value for path, value, _ in walked} == TREE
    seen = set()
    for path, _, _ in walked:
        assert path == b"/tree" or path.rsplit(b"/", 1)[0] in seen
        seen.add(path)


def test_walk_bottom_up(client):
    build(client)
    walked = list(client.walk("/tree", topdown=False))
    assert walked == reference(client, b"/tree", False)
    done = set()
    for path, _, children in walked:
        assert all(path + b"/" + name in done for name in children)
        done.add(path)
    assert walked[-1][0] == b"/tree"


def test_walk_pruning(client):
    build(client)
    walked = []
    for path, _, children in client.walk(b"/tree"):
        walked.append(path)
        if path == b"/tree":
            children.remove(b"a")
    assert walked == [b"/tree", b"/tree/b", b"/tree/c", b"/tree/c/z"]
    walked = []
    for path, _, children in client.walk(b"/tree"):
        walked.append(path)
        children[:] = []
    assert walked == [b"/tree"]


def test_walk_root_and_missing(client):
    build(client)
    paths = [path for path, _, _ in client.walk(b"/")]
    assert paths[0] == b"/" and set(TREE) <= set(paths)
    assert b"//tree" not in paths
    with pytest.raises(PyXSError) as info:
        list(client.walk(b"/missing"))
    assert info.value.args[0] == errno.ENOENT
    assert "/missing" in str(info.value)


def test_walk_in_a_transaction(client):
    build(client)
    client.transaction()
    client.write(b"/tree/new", b"N")
    client.delete(b"/tree/a")
    paths = [path for path, _, _ in client.walk(b"/tree")]
    client.rollback()
    assert sorted(paths) == [b"/tree", b"/tree/b", b"/tree/c",
                             b"/tree/c/z", b"/tree/new"]
    assert client.exists(b"/tree/a/x/deep")


def test_walk_is_pipelined(client):
    for i in range(100):
        client.write(b"/pipe/n%03d" % i, b"%d" % i)
    sent = SendLog(client)
    walk = client.walk(b"/pipe")
    path, _, children = next(walk)
    assert path == b"/pipe" and len(children) == 100
    # Before the caller has seen any child, requests for many children
    # are already on the wire (the listing and the value of each).
    assert len(sent.ops) >= 2 + 2 * 32
    rest = list(walk)
    assert sorted(p for p, _, _ in rest) == [b"/pipe/n%03d" % i
                                              for i in range(100)]
    assert all(value == b"%d" % int(p[-3:]) for p, value, _ in rest)



def wide_tree(client, top, dirs, keys):
    for d in range(dirs):
        for k in range(keys):
            client.write(b"%s/d%d/k%d" % (top, d, k), b"%d.%d" % (d, k))


def test_walk_looks_ahead_into_later_directories(client):
    wide_tree(client, b"/la", 10, 5)
    sent = SendLog(client)
    walk = client.walk(b"/la")
    assert next(walk)[0] == b"/la"
    assert next(walk)[0] == b"/la/d0"
    client.read(b"/la")  # its reply comes after those of /la/d1../la/d9
    assert next(walk)[0] == b"/la/d0/k0"
    # Entering /la/d0 requested the children of every later directory
    # whose listing was in, before the walk got anywhere near them.
    requested = {payload for op, payload in sent.requests
                 if op == Op.DIRECTORY}
    assert {b"/la/d%d/k%d\x00" % (d, k) for d in range(10)
            for k in range(5)} <= requested
    rest = list(walk)
    assert [path for path, _, _ in rest] == \
        [p for p, _, _ in reference(client, b"/la", True)][3:]


def test_walk_look_ahead_never_goes_below_a_pruned_name(client):
    wide_tree(client, b"/lp", 6, 3)
    client.write(b"/lp/d3/k0/deeper", b"x")
    sent = SendLog(client)
    walked = []
    for path, _, children in client.walk(b"/lp"):
        walked.append(path)
        if path == b"/lp":
            children.remove(b"d3")
        if path == b"/lp/d0":
            client.read(b"/lp")  # every listing of /lp's children is in
    assert not any(payload.startswith(b"/lp/d3/")
                   for _, payload in sent.requests)
    assert walked == [p for p, _, _ in reference(client, b"/lp", True)
                      if not p.startswith(b"/lp/d3")]


@pytest.mark.parametrize("topdown", [True, False])
def test_walk_beyond_the_look_ahead_budget_keeps_the_order(client, topdown):
    # 40 directories of 12 children: far more than the walk may have in
    # flight, so the look-ahead stops and resumes many times.
    wide_tree(client, b"/lb", 40, 12)
    walked = list(client.walk(b"/lb", topdown=topdown))
    assert walked == reference(client, b"/lb", topdown)

NAMES = {b"child-%d-%s" % (i, b"x" * (i % 37)) for i in range(2000)}


def test_list_of_2000_children(daemon, client):
    for name in NAMES:
        client.write(b"/big/" + name, b"")
    sent = SendLog(client)
    listing = client.list(b"/big")
    assert len(listing) == 2000 and set(listing) == NAMES
    parts = sent.ops.count(Op.DIRECTORY_PART)
    if expect(daemon.kind, {"default": True, "oxenstored": False}):
        # One DIRECTORY (E2BIG), then parts of at most 4096 bytes.
        assert sent.ops[0] == Op.DIRECTORY
        assert parts >= sum(len(n) + 1 for n in NAMES) // 4096
        with pytest.raises(PyXSError) as info:
            client.execute_command(Op.DIRECTORY, b"/big\x00")
        assert info.value.args[0] == errno.E2BIG
    else:
        # oxenstored has no DIRECTORY_PART and sends the whole list in
        # one reply longer than 4096 bytes.
        assert sent.ops == [Op.DIRECTORY] and parts == 0
        raw = client.execute_command(Op.DIRECTORY, b"/big\x00")
        assert len(raw) > 4096 and set(raw.split(b"\x00")) == NAMES
        assert errno.ENOSYS == pytest.raises(
            PyXSError, client.execute_command, Op.DIRECTORY_PART,
            b"/big\x00", b"0\x00").value.args[0]
    walked = list(client.walk(b"/big"))
    assert len(walked) == 2001
    assert walked[0][0] == b"/big" and set(walked[0][2]) == NAMES
    assert {path for path, _, _ in walked[1:]} == {b"/big/" + n
                                                   for n in NAMES}
    assert client.exists(b"/big")
