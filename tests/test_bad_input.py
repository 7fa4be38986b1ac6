"""Bad input from the caller: refused before anything reaches the daemon,
with a clear error, and the connection keeps working."""

import math

import pytest
from xsassert import BOUND, SendLog

import pyxs.aio
from pyxs import Client
from pyxs._internal import Op
from pyxs.exceptions import (
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    InvalidToken,
    TimeoutError,
)
from pyxs.helpers import TIMEOUT_MAX

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
        assert message.startswith(name + ": invalid path ")
        assert len(message) < 200
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
    assert message.startswith("write: invalid value of 4086 bytes")
    assert "/big/value" in message
    assert len(message) < 200  # never the 4 KB payload itself
    assert sent.ops == []
    client.write(path, b"small")
    assert client.read(path) == b"small"


def test_wrong_value_and_domid_types(client):
    sent = SendLog(client)
    for value in (None, 5, ["x"]):
        with pytest.raises(TypeError):
            client.write(b"/t", value)
    for domid in ("5", None, 1.0, -1, 2 ** 16, 2 ** 32, True):
        with pytest.raises((TypeError, ValueError)):
            client.get_domain_path(domid)
    with pytest.raises(TypeError):
        client.control()
    with pytest.raises(InvalidPayload):
        client.control(b"print", b"a\x00b")
    assert sent.ops == []


SURROGATE = "\udcff"  # what os.fsdecode() makes of a stray 0xff byte


def test_unencodable_str_gets_the_error_of_its_argument(client):
    # Used to raise a raw UnicodeEncodeError (paths already gave
    # InvalidPath).
    m = client.monitor()
    sent = SendLog(client)
    cases = [
        (InvalidPayload, "write: invalid value",
         lambda: client.write(b"/v", "ok" + SURROGATE)),
        (InvalidToken, "watch: invalid token",
         lambda: m.watch(b"/w", SURROGATE)),
        (InvalidToken, "unwatch: invalid token",
         lambda: m.unwatch(b"/w", "t" + SURROGATE)),
        (InvalidPayload, "execute_command: invalid argument",
         lambda: client.execute_command(Op.READ, "/a", SURROGATE)),
        (InvalidPayload, "control: invalid argument",
         lambda: client.control("print", SURROGATE)),
        (InvalidPath, "read: invalid path", lambda: client.read(SURROGATE)),
        (InvalidPath, "watch: invalid path",
         lambda: m.watch("/" + SURROGATE, b"t")),
        (InvalidPermission, "set_perms: invalid permission",
         lambda: client.set_perms(b"/v", ["r" + SURROGATE])),
    ]
    for kind, start, call in cases:
        with pytest.raises(kind) as info:
            call()
        message = str(info.value)
        assert message.startswith(start), message
        assert "\\udcff" in message and len(message) < 200
        assert isinstance(info.value, ValueError)
        assert len(info.value.args) == 1  # args == (value,)
    assert sent.ops == []
    client.write(b"/v", "caf\u00e9")  # encodable str is UTF-8
    assert client.read(b"/v") == "caf\u00e9".encode()


@pytest.mark.parametrize("timeout, kind", [
    (math.inf, ValueError), (-math.inf, ValueError), (math.nan, ValueError),
    (-1, ValueError), (-0.001, ValueError), (TIMEOUT_MAX + 1, ValueError),
    (10 ** 30, ValueError), ("1", TypeError), (b"1", TypeError),
    ([1], TypeError), (True, TypeError),
])
@pytest.mark.parametrize("client_class", [Client, pyxs.aio.Client])
def test_client_timeout_is_checked_at_construction(tmp_path, timeout, kind,
                                                   client_class):
    # inf, nan and "1" used to be accepted and fail later with a raw
    # OverflowError, ValueError or TypeError (pyxs.aio: until 0.5.0).
    with pytest.raises(kind) as info:
        client_class(unix_socket_path=str(tmp_path / "none"),
                     timeout=timeout)
    assert "Client: timeout must be" in str(info.value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("timeout", [None, 0, 0.5, 3, TIMEOUT_MAX])
def test_valid_client_timeouts(tmp_path, timeout):
    c = Client(unix_socket_path=str(tmp_path / "none"), timeout=timeout)
    assert c.timeout == timeout


def test_monitor_timeout_is_checked(client):
    m = client.monitor()
    m.watch(b"/w", b"tok")
    for timeout, kind in ((math.inf, ValueError), (math.nan, ValueError),
                          (-1, ValueError), ("1", TypeError)):
        with pytest.raises(kind) as info:
            m.get(timeout=timeout)
        assert str(info.value).startswith("Monitor.get: timeout must be")
        with pytest.raises(kind):
            next(m.wait(timeout=timeout))
    # Nothing was consumed: the watch's first event is still there.
    assert m.get(timeout=BOUND) == (b"/w", b"tok")
    with pytest.raises(TimeoutError):
        m.get(timeout=0)


@pytest.mark.parametrize("name, call", [
    ("get_domain_path", lambda c, d: c.get_domain_path(d)),
    ("is_domain_introduced", lambda c, d: c.is_domain_introduced(d)),
    ("introduce_domain", lambda c, d: c.introduce_domain(d, 1, 1)),
    ("release_domain", lambda c, d: c.release_domain(d)),
    ("resume_domain", lambda c, d: c.resume_domain(d)),
    ("set_target", lambda c, d: c.set_target(d, 1)),
    ("set_target", lambda c, d: c.set_target(1, d)),
])
def test_domids_above_16_bits_are_refused_before_sending(client, name,
                                                         call):
    # Xen's domid_t is 16 bits: 65,536 and up used to reach the daemon.
    sent = SendLog(client)
    for domid in (2 ** 16, 2 ** 16 + 5, 2 ** 32 - 1, -1):
        with pytest.raises(ValueError) as info:
            call(client, domid)
        message = str(info.value)
        assert message.startswith(name + ": ") and "out of range 0..65535" \
            in message, message
    with pytest.raises(TypeError, match="^%s: " % name):
        call(client, "5")
    assert sent.ops == []
    assert client.get_domain_path(65535) == b"/local/domain/65535"


def test_every_refusal_names_the_call_and_the_argument(client):
    m = client.monitor()
    sent = SendLog(client)
    cases = [
        ("read: invalid path '/a//b': contains //",
         lambda: client.read(b"/a//b")),
        ("write: invalid path '/a/': trailing /",
         lambda: client.write("/a/", b"v")),
        ("mkdir: invalid path ''", lambda: client.mkdir(b"")),
        ("delete: invalid path", lambda: client.delete(b"/a b")),
        ("list: invalid path", lambda: client.list(b"/a//b")),
        ("exists: invalid path", lambda: client.exists(b"/a//b")),
        ("get_perms: invalid path", lambda: client.get_perms(b"/a//b")),
        ("set_perms: invalid permission 'x0'",
         lambda: client.set_perms(b"/a", [b"x0"])),
        ("walk: invalid path", lambda: list(client.walk(b"/a//b"))),
        ("watch: invalid path '@other'", lambda: m.watch(b"@other", b"t")),
        ("watch: invalid token ''", lambda: m.watch(b"/w", b"")),
        ("unwatch: invalid path", lambda: m.unwatch(b"/w/", b"t")),
        ("control: invalid argument b'a\\x00b': must not contain NUL",
         lambda: client.control("print", b"a\x00b")),
        ("execute_command: invalid operation 99",
         lambda: client.execute_command(99, b"x")),
        ("write: value must be bytes or str, not int",
         lambda: client.write(b"/a", 5)),
        ("read: path must be bytes or str, not NoneType",
         lambda: client.read(None)),
        ("watch: token must be bytes or str, not int",
         lambda: m.watch(b"/w", 7)),
        ("get_domain_path: domid must be an int, not float",
         lambda: client.get_domain_path(1.0)),
        ("execute_command: invalid payload of 5001 bytes: exceeds",
         lambda: client.execute_command(Op.WRITE, b"/a\x00", b"v" * 4998)),
        ("control: invalid payload of 5007 bytes: exceeds",
         lambda: client.control("print", b"v" * 5000)),
    ]
    for expected, call in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert str(info.value).startswith(expected), str(info.value)
    assert sent.ops == []
    client.write(b"/a", b"still works")
