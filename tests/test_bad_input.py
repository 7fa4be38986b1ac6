"""Bad input from the caller: refused before anything reaches the daemon,
with a clear error, and the connection keeps working."""

import pytest
from xsassert import SendLog

from pyxs.exceptions import InvalidPath, InvalidPayload, InvalidPermission

BAD_PATHS = [
    b"", b"/a//b", b"/a/", b"/a b", b"/a%b", b"/a\x00b", b"/a\nb",
    b"/" + b"a" * 3072, b"a" * 2049, "/caf\u00e9", b"/a\xff",
]
NOT_PATHS = [None, 5, 1.5, ["/a"], object()]

PATH_METHODS = [
    ("read", ()), ("write", (b"v",)), ("mkdir", ()), ("delete", ()),
    ("list", ()), ("exists", ()), ("get_perms", ()),
    ("set_perms", ([b"n0"],)), ("walk", ()),
]


def use(client, name, path, extra):
    result = getattr(client, name)(path, *extra)
    if name == "walk":
        list(result)


@pytest.mark.parametrize("name, extra", PATH_METHODS,
                         ids=[m for m, _ in PATH_METHODS])
def test_invalid_paths_are_refused_before_sending(client, name, extra):
    sent = SendLog(client)
    for path in BAD_PATHS:
        with pytest.raises(InvalidPath) as info:
            use(client, name, path, extra)
        message = str(info.value)
        assert message.startswith("invalid path") and len(message) < 200
    for path in NOT_PATHS:
        with pytest.raises(TypeError):
            use(client, name, path, extra)
    assert sent.ops == []
    client.write(b"/still/works", b"yes")
    assert client.read(b"/still/works") == b"yes"


def test_watch_paths_and_tokens(client):
    m = client.monitor()
    sent = SendLog(client)
    for path in BAD_PATHS + [b"@other", b"@introduceDomain/x"]:
        with pytest.raises(InvalidPath):
            m.watch(path, b"tok")
        with pytest.raises(InvalidPath):
            m.unwatch(path, b"tok")
    for token in (b"a\x00b", b"", b"\x00"):
        # A NUL would smuggle a third field into WATCH: refused.
        with pytest.raises(InvalidPayload):
            m.watch(b"/w", token)
    with pytest.raises(TypeError):
        m.watch(b"/w", 7)
    assert sent.ops == []
    m.watch(b"/w", b"ok")
    assert m.get(timeout=30) == (b"/w", b"ok")


@pytest.mark.parametrize("perms", [
    [], [b"x0"], [b"r"], [b"r-1"], [b"r0\x00b1"], [b"b0 "], ["r\u0665"],
    [b"r99999999999"], b"r0", "b0",
])
def test_invalid_permissions(client, perms):
    client.write(b"/p", b"")
    sent = SendLog(client)
    with pytest.raises((InvalidPermission, TypeError)):
        client.set_perms(b"/p", perms)
    assert sent.ops == []
    assert client.get_perms(b"/p")  # still usable


def test_oversize_values_are_refused_with_a_short_message(client):
    sent = SendLog(client)
    path = b"/big/value"
    value = b"v" * (4096 - len(path))  # path + NUL + value = 4097 bytes
    with pytest.raises(InvalidPayload) as info:
        client.write(path, value)
    message = str(info.value)
    assert "WRITE" in message and "/big/value" in message
    assert len(message) < 200  # never the 4 KB payload itself
    assert sent.ops == []
    client.write(path, b"small")
    assert client.read(path) == b"small"


def test_wrong_value_and_domid_types(client):
    sent = SendLog(client)
    for value in (None, 5, ["x"]):
        with pytest.raises(TypeError):
            client.write(b"/t", value)
    for domid in ("5", None, 1.0, -1, 2 ** 32, True):
        with pytest.raises((TypeError, ValueError)):
            client.get_domain_path(domid)
    with pytest.raises(TypeError):
        client.control()
    with pytest.raises(InvalidPayload):
        client.control(b"print", b"a\x00b")
    assert sent.ops == []
