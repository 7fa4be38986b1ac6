"""Validators and error mapping: refused arguments never reach a daemon."""

import errno
import os

import pytest

from pyxs import helpers
from pyxs.exceptions import (
    InvalidDomid,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    InvalidToken,
    PyXSError,
)
from pyxs.helpers import (
    error,
    force_bytes,
    validate_domid,
    validate_path,
    validate_perms,
    validate_token,
    validate_watch_path,
)


@pytest.mark.parametrize("path", [
    "/", "/a", "/local/domain/0/name", "/a-b_c@d/0/Z9", "relative",
    "rel/a/b", "@notspecial/as/a/node", "/" + "a" * 3071, "r" * 2048,
])
def test_valid_paths(path):
    assert validate_path(path) == path.encode("ascii")
    assert validate_path(path.encode("ascii")) == path.encode("ascii")


def test_path_from_bytearray():
    assert validate_path(bytearray(b"/a")) == b"/a"


def test_remembered_paths_stay_bounded_and_correct():
    # validate_path() remembers paths it accepted: a refused path is
    # refused every time, and the memory does not grow without bound.
    for n in range(3 * helpers._VALID_PATHS_MAX):
        assert validate_path("/many/%d" % n) == b"/many/%d" % n
        assert len(helpers._valid_paths) <= helpers._VALID_PATHS_MAX
    for _ in range(2):
        assert validate_path("/again") == b"/again"
        with pytest.raises(InvalidPath):
            validate_path("/again/")
    long_path = "/" + "l" * 3000
    assert validate_path(long_path) == long_path.encode()
    assert long_path not in helpers._valid_paths


@pytest.mark.parametrize("path, reason", [
    ("", "empty"),
    ("/a/", "trailing"),
    ("a/", "trailing"),
    ("//", "//"),
    ("//a", "//"),
    ("/a//b", "//"),
    ("/a b", "allowed"),
    ("/a.b", "allowed"),
    ("/a\x00b", "allowed"),
    ("/a\nb", "allowed"),
    ("/a:b", "allowed"),
    ("/é", "ASCII"),
    (b"/\xff", "allowed"),
    ("/" + "a" * 3072, "3072"),
    ("r" * 2049, "2048"),
])
def test_invalid_paths(path, reason):
    with pytest.raises(InvalidPath, match=reason) as info:
        validate_path(path)
    assert info.value.args[0] in (path, path.encode("utf-8")
                                  if isinstance(path, str) else path)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PyXSError)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("value", [None, 5, 1.5, ["/a"]])
def test_path_of_wrong_type(value):
    with pytest.raises(TypeError):
        validate_path(value)


@pytest.mark.parametrize("wpath", ["@introduceDomain", "@releaseDomain",
                                   b"@releaseDomain", "/a/b", "rel", "/",
                                   "@releaseDomain/5", "@introduceDomain/0"])
def test_valid_watch_paths(wpath):
    expected = wpath if isinstance(wpath, bytes) else wpath.encode()
    assert validate_watch_path(wpath) == expected


@pytest.mark.parametrize("wpath", ["@other", "@introduceDomain/x",
                                   "@introducedomain", "@", "/a/", "",
                                   "/a b", "@releaseDomain/05",
                                   "@releaseDomain/", "@releaseDomain/1/2",
                                   "@releaseDomain/123456"])
def test_invalid_watch_paths(wpath):
    with pytest.raises(InvalidPath):
        validate_watch_path(wpath)


def test_valid_perms():
    assert validate_perms(["n0", "r5", b"w7", "b4294967295"]) == \
        [b"n0", b"r5", b"w7", b"b4294967295"]
    assert validate_perms(iter([b"b1"])) == [b"b1"]


@pytest.mark.parametrize("perm", ["x0", "r", "5", "R5", "r5 ", " r5", "r-1",
                                  "r+1", "rw5", "b4294967296", "r0x1", "n",
                                  "ré", ""])
def test_invalid_perm(perm):
    with pytest.raises(InvalidPermission) as info:
        validate_perms(["n0", perm])
    assert info.value.args[0] in (perm, perm.encode("utf-8"))
    assert isinstance(info.value, ValueError)


def test_empty_perms():
    with pytest.raises(InvalidPermission):
        validate_perms([])


@pytest.mark.parametrize("perms", ["n0", b"n0"])
def test_perms_must_be_a_list(perms):
    with pytest.raises(TypeError):
        validate_perms(perms)


@pytest.mark.parametrize("token", [b"t", "tok", b"\xff\x01 any/bytes@",
                                   "x" * 500])
def test_valid_tokens(token):
    assert validate_token(token) == force_bytes(token)


@pytest.mark.parametrize("token", [b"", "", b"a\x00b", "\x00"])
def test_invalid_tokens(token):
    with pytest.raises(InvalidToken) as info:
        validate_token(token)
    assert isinstance(info.value, InvalidPayload)


def test_token_of_wrong_type():
    with pytest.raises(TypeError):
        validate_token(42)


def test_domids():
    assert validate_domid(0) == 0
    assert validate_domid(2 ** 16 - 1) == 2 ** 16 - 1  # domid_t is 16 bits
    assert validate_domid(2 ** 32 - 1, "eventchn", limit=2 ** 32) == \
        2 ** 32 - 1
    for bad in (-1, 2 ** 16, 2 ** 32):
        with pytest.raises(ValueError, match="out of range 0..65535"):
            validate_domid(bad)
    for bad in (True, "1", 1.0, None):
        with pytest.raises(TypeError):
            validate_domid(bad)


def test_force_bytes():
    assert force_bytes("é") == "é".encode()
    assert force_bytes(memoryview(b"ab")) == b"ab"
    with pytest.raises(TypeError, match="value must be bytes or str"):
        force_bytes(3)


# The error names of xs_wire.h, in their array order.
XS_ERRORS = ["EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM",
             "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY",
             "EAGAIN", "EISCONN", "E2BIG", "EPERM"]


@pytest.mark.parametrize("name", XS_ERRORS)
def test_error_names_map_to_errno(name):
    number = getattr(errno, name)
    for given in (name, name.encode("ascii"), number):
        exc = error(given)
        assert isinstance(exc, PyXSError)
        assert exc.args == (number, os.strerror(number))
        assert exc.errno == number and exc.strerror == os.strerror(number)


def test_unknown_error_name_is_kept():
    exc = error(b"EQUOTA")
    assert exc.args[0] == "EQUOTA"
    assert exc.errno == "EQUOTA"
    assert "EQUOTA" in str(exc)
    assert error("ENEWTHING").args[0] == "ENEWTHING"


def test_error_message_names_operation_and_short_path():
    exc = error("ENOENT").with_context("READ", b"/" + b"a" * 3000)
    text = str(exc)
    assert "READ" in text and "/aaa" in text and "No such file" in text
    assert len(text) < 200


def test_old_names_remain():
    assert helpers.check_path is validate_path
    assert helpers.check_watch_path is validate_watch_path
    assert helpers.check_perms is validate_perms


def test_refusals_name_the_call():
    with pytest.raises(InvalidPath) as info:
        validate_path(b"/a//b", "read")
    assert str(info.value) == "read: invalid path '/a//b': contains //"
    assert info.value.args == (b"/a//b",) and info.value.call == "read"
    with pytest.raises(InvalidToken, match="^watch: invalid token"):
        validate_token("\udcff", "watch")
    with pytest.raises(InvalidPayload, match="^write: invalid value"):
        helpers.validate_value("\ud800", "write")
    with pytest.raises(InvalidDomid) as info:
        validate_domid(65536, call="get_domain_path")
    assert str(info.value) == \
        "get_domain_path: invalid domid 65536: out of range 0..65535"
    assert info.value.args == (65536,) and isinstance(info.value, ValueError)
    # Without a call, the messages are as before.
    with pytest.raises(InvalidPath, match="^invalid path"):
        validate_path(b"/a//b")


@pytest.mark.parametrize("timeout", [None, 0, 0.0, 1, 2.5,
                                     helpers.TIMEOUT_MAX])
def test_valid_timeouts(timeout):
    checked = helpers.validate_timeout(timeout)
    assert checked == timeout and (checked is None or type(checked) is float)


@pytest.mark.parametrize("timeout, kind", [
    (float("inf"), ValueError), (float("nan"), ValueError), (-1, ValueError),
    (helpers.TIMEOUT_MAX + 0.5, ValueError), ("1", TypeError),
    (True, TypeError), (object(), TypeError),
])
def test_invalid_timeouts(timeout, kind):
    with pytest.raises(kind, match="^f: timeout must be"):
        helpers.validate_timeout(timeout, "f")
