"""Every Client method against real daemons."""

import builtins
import errno
import threading
import time

import pytest
from conftest import expect
from xsassert import BOUND, SendLog, events_before_marker, stopped

import pyxs
from pyxs import Client, Router
from pyxs._internal import Op
from pyxs.connection import UnixSocketConnection
from pyxs.exceptions import (
    ConnectionError,
    InvalidOperation,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    PyXSError,
    TimeoutError,
)

ALL_BYTES = bytes(range(256))


def errno_of(call, *args):
    with pytest.raises(PyXSError) as info:
        call(*args)
    return info.value.args[0]


# -- read and write ----------------------------------------------------------

def test_write_read_bytes_and_str(client):
    client.write(b"/a", b"bytes")
    client.write("/b", "text")
    client.write("/c", "é")
    assert client.read(b"/a") == b"bytes"
    assert client.read("/b") == b"text"
    assert client.read("/c") == "é".encode()
    client.write("/a", b"")
    assert client.read("/a") == b""


def test_binary_values_with_every_byte(client):
    client.write(b"/bin", ALL_BYTES)
    assert client.read(b"/bin") == ALL_BYTES
    client.write(b"/nul", b"\x00\x00x\x00")
    assert client.read(b"/nul") == b"\x00\x00x\x00"


def test_read_missing(client):
    with pytest.raises(PyXSError) as info:
        client.read(b"/missing/node")
    exc = info.value
    assert exc.args == (errno.ENOENT, "No such file or directory")
    assert "READ" in str(exc) and "/missing/node" in str(exc)


def test_read_default(client):
    assert client.read(b"/missing", b"fallback") == b"fallback"
    assert client.read(b"/missing", default=b"") == b""
    client.write(b"/present", b"v")
    assert client.read(b"/present", b"fallback") == b"v"


def test_write_creates_parents_with_empty_values(client):
    client.write(b"/p/q/r", b"leaf")
    assert client.read(b"/p/q") == b""
    assert client.read(b"/p") == b""
    assert client.list(b"/p") == [b"q"]


def test_value_size_limit(daemon, client):
    path = b"/v"
    largest = 4096 - len(path) - 1
    value = bytes(range(256)) * 15 + b"z" * (largest - 3840)
    assert len(value) == largest
    outcome = expect(daemon.kind, {
        "default": None,
        # oxenstored holds even dom0 to its 2048-byte value quota.
        "oxenstored": errno.E2BIG,
    })
    if outcome is None:
        client.write(path, value)
        assert client.read(path) == value
    else:
        with pytest.raises(PyXSError) as info:
            client.write(path, value)
        assert info.value.args[0] == outcome
        assert "WRITE" in str(info.value) and len(str(info.value)) < 200
    with pytest.raises(InvalidPayload) as info:
        client.write(b"/w", value + b"x")
    assert isinstance(info.value, ValueError)
    assert len(str(info.value)) < 200 and "/w" in str(info.value)
    # Refused before sending (xenstored drops a client sending more): the
    # connection still works and nothing was written.
    assert errno_of(client.read, b"/w") == errno.ENOENT
    client.write(b"/after", b"ok")
    assert client.read(b"/after") == b"ok"


def test_oxenstored_value_quota_boundary(daemon, client):
    client.write(b"/q", b"x" * 2048)
    assert client.read(b"/q") == b"x" * 2048
    if expect(daemon.kind, {"default": True, "oxenstored": False}):
        client.write(b"/q", b"x" * 2049)
        assert len(client.read(b"/q")) == 2049
    else:
        assert errno_of(client.write, b"/q", b"x" * 2049) == errno.E2BIG


def test_invalid_path_is_refused_before_sending(client):
    for bad in (b"/a/", b"/a//b", b"/a b", b""):
        with pytest.raises(InvalidPath):
            client.write(bad, b"v")
        with pytest.raises(InvalidPath):
            client.read(bad)
    assert client.list(b"/") == client.list(b"/")


def test_item_access(client):
    client["/item"] = "value"
    assert client["/item"] == b"value"
    client[b"/item"] = b"other"
    assert client[b"/item"] == b"other"
    del client["/item"]
    assert errno_of(client.__getitem__, "/item") == errno.ENOENT


# -- mkdir, delete, list, exists ---------------------------------------------

def test_mkdir(client):
    client.mkdir(b"/m/n/o")
    assert client.read(b"/m/n/o") == b""
    assert client.list(b"/m/n") == [b"o"]
    client.write(b"/m/n/o", b"kept")
    client.mkdir(b"/m/n/o")
    client.mkdir(b"/m/n")
    assert client.read(b"/m/n/o") == b"kept"


def test_delete(client):
    client.write(b"/d/a/b", b"1")
    client.write(b"/d/c", b"2")
    client.delete(b"/d/a")
    assert client.list(b"/d") == [b"c"]
    assert not client.exists(b"/d/a/b")
    client.delete(b"/d/missing")  # a missing node is fine
    with pytest.raises(PyXSError) as info:
        client.delete(b"/nowhere/child")  # a missing parent is not
    assert info.value.args[0] == errno.ENOENT
    assert "RM" in str(info.value) and "/nowhere/child" in str(info.value)


def test_delete_root(daemon, client):
    client.write(b"/keep", b"v")
    if expect(daemon.kind, {"default": True, "oxenstored": False}):
        assert errno_of(client.delete, b"/") == errno.EINVAL
        assert client.read(b"/keep") == b"v"
    else:
        client.delete(b"/")  # oxenstored empties the whole store
        assert client.list(b"/") == []


def test_list(client):
    assert errno_of(client.list, b"/nolist") == errno.ENOENT
    client.write(b"/l/leaf", b"")
    for name in (b"b", b"a", b"c-1", b"_d@"):
        client.write(b"/l/dir/" + name, b"")
    assert client.list(b"/l/leaf") == []
    assert sorted(client.list("/l/dir")) == [b"_d@", b"a", b"b", b"c-1"]


def test_root_listing(daemon, client):
    names = set(client.list(b"/"))
    assert names == expect(daemon.kind, {
        "default": {b"tool"},
        "oxenstored": {b"tool", b"local", b"@introduceDomain",
                       b"@releaseDomain"},
    })


def test_exists(client):
    assert client.exists(b"/")
    assert not client.exists(b"/e")
    client.write(b"/e/f", b"")
    assert client.exists(b"/e") and client.exists("/e/f")
    client.delete(b"/e")
    assert not client.exists(b"/e/f")


# -- permissions -------------------------------------------------------------

def test_perms(client):
    client.write(b"/pm", b"v")
    assert client.get_perms(b"/pm") == [b"n0"]
    client.set_perms(b"/pm", ["n0", "r5", b"w7", "b9"])
    assert client.get_perms(b"/pm") == [b"n0", b"r5", b"w7", b"b9"]
    client.set_perms("/pm", [b"b3"])
    assert client.get_perms("/pm") == [b"b3"]
    assert client.read(b"/pm") == b"v"  # dom0 keeps full access


def test_perms_are_inherited_by_new_children(client):
    client.write(b"/pi", b"")
    client.set_perms(b"/pi", [b"r4", b"w6"])
    client.write(b"/pi/child", b"")
    assert client.get_perms(b"/pi/child") == [b"r4", b"w6"]


def test_perms_errors(client):
    assert errno_of(client.get_perms, b"/nope") == errno.ENOENT
    with pytest.raises(PyXSError) as info:
        client.set_perms(b"/nope", [b"n0"])
    assert info.value.args[0] == errno.ENOENT
    assert "SET_PERMS" in str(info.value)
    client.write(b"/pe", b"")
    for perms in ([b"x0"], [b"r"], [], ["n0", "r-1"]):
        with pytest.raises(InvalidPermission):
            client.set_perms(b"/pe", perms)
    assert client.get_perms(b"/pe") == [b"n0"]
    assert errno_of(client.execute_command, Op.SET_PERMS,
                    b"/pe\x00", b"q5\x00") == errno.EINVAL


# -- domains -----------------------------------------------------------------

def test_get_domain_path(client):
    assert client.get_domain_path(5) == b"/local/domain/5"
    assert client.get_domain_path(0) == b"/local/domain/0"
    with pytest.raises(ValueError):
        client.get_domain_path(-1)
    with pytest.raises(TypeError):
        client.get_domain_path("5")


def test_is_domain_introduced(daemon, client):
    assert client.is_domain_introduced(0) is expect(daemon.kind, {
        "default": True,
        "oxenstored": False,  # dom0 is not introduced with --no-domain-init
    })
    assert client.is_domain_introduced(5) is False


def test_introduce_release_and_their_events(daemon, client):
    c_xenstored = expect(daemon.kind, {"default": True, "oxenstored": False})
    with client.monitor() as m:
        m.watch(b"@introduceDomain", b"intro")
        m.watch(b"@releaseDomain", b"release")
        assert {m.get(BOUND), m.get(BOUND)} == {
            (b"@introduceDomain", b"intro"), (b"@releaseDomain", b"release")}
        assert client.is_domain_introduced(5) is False

        if c_xenstored:
            client.introduce_domain(5, 1234, 1)
        else:
            # oxenstored (with the test stub) answers EINVAL although it
            # records the domain, and fires no @introduceDomain.
            assert errno_of(client.introduce_domain, 5, 1234, 1) == \
                errno.EINVAL
        assert client.is_domain_introduced(5) is True
        assert events_before_marker(m) == (
            [(b"@introduceDomain", b"intro")] if c_xenstored else [])

        client.introduce_domain(5, 1234, 1)  # again: accepted, no event
        client.resume_domain(5)
        client.set_target(5, 0)
        assert events_before_marker(m) == []

        if c_xenstored:
            client.release_domain(5)
        else:
            assert errno_of(client.release_domain, 5) == errno.ENOENT
        assert client.is_domain_introduced(5) is False
        assert events_before_marker(m) == (
            [(b"@releaseDomain", b"release")] if c_xenstored else [])

        assert errno_of(client.release_domain, 5) == expect(
            daemon.kind, {"default": errno.ENOENT,
                          "oxenstored": errno.EINVAL})
        assert errno_of(client.resume_domain, 77) == expect(
            daemon.kind, {"default": errno.ENOENT,
                          "oxenstored": errno.EINVAL})
        with pytest.raises(PyXSError) as info:
            client.set_target(77, 5)
        assert info.value.args[0] == errno.ENOENT
        assert "SET_TARGET" in str(info.value)


def test_introduce_domain_validates_arguments(client):
    with pytest.raises(ValueError, match="mfn"):
        client.introduce_domain(5, -1, 1)
    with pytest.raises(TypeError, match="eventchn"):
        client.introduce_domain(5, 1, "1")
    assert client.is_domain_introduced(5) is False


# -- raw commands ------------------------------------------------------------

def test_execute_command(client):
    assert client.execute_command(Op.GET_DOMAIN_PATH, b"3",
                                  nul_terminated=True) == b"/local/domain/3"
    assert client.execute_command(Op.WRITE, b"/raw\x00", b"v\x00al") == b"OK"
    assert client.read(b"/raw") == b"v\x00al"
    assert client.execute_command(Op.READ, "/raw\x00") == b"v\x00al"
    with pytest.raises(InvalidOperation):
        client.execute_command(20, b"")
    with pytest.raises(InvalidPayload):
        client.execute_command(Op.WRITE, b"/big\x00", b"x" * 4096)
    assert client.read(b"/raw") == b"v\x00al"


def test_daemon_errors_einval_enosys_eexist(daemon, client):
    with pytest.raises(PyXSError) as info:
        client.execute_command(Op.READ, b"bad path\x00")
    assert info.value.args[0] == errno.EINVAL and "READ" in str(info.value)
    assert errno_of(client.execute_command, Op.TRANSACTION_END,
                    b"X\x00") == errno.EINVAL
    # GET_FEATURE is Xen 4.21's: older daemons lack it.
    if expect(daemon, {"default": False, "xenstored-4.22": True}):
        assert int(client.execute_command(Op.GET_FEATURE, b"0\x00")
                   .rstrip(b"\x00")) >= 0
    else:
        with pytest.raises(PyXSError) as info:
            client.execute_command(Op.GET_FEATURE, b"0\x00")
        assert info.value.args[0] == errno.ENOSYS
        assert "GET_FEATURE" in str(info.value)
    with client.monitor() as m:
        m.watch(b"/dup", b"t")
        with pytest.raises(PyXSError) as info:
            m.watch(b"/dup", b"t")
        assert info.value.args[0] == errno.EEXIST
        assert "WATCH" in str(info.value) and "/dup" in str(info.value)


def test_error_messages_stay_short(client):
    long_path = b"/" + b"a" * 2040
    with pytest.raises(PyXSError) as info:
        client.read(long_path)
    text = str(info.value)
    assert info.value.args[0] == errno.ENOENT
    assert "READ" in text and "/aaaa" in text and len(text) < 200
    with pytest.raises(PyXSError) as info:
        client.delete(long_path + b"/x")
    assert "RM" in str(info.value) and len(str(info.value)) < 200


def test_daemons_limit_paths_outside_domains_to_2048_bytes(daemon, client):
    # The daemons allow 2048 bytes below /local/domain/<id>/ and 2048 in
    # all elsewhere, under the 3072 of the protocol notes that pyxs checks.
    client.write(b"/" + b"a" * 2047, b"")
    client.write(b"/local/domain/5/" + b"b" * 2048, b"")
    too_long = [b"/" + b"a" * 2048, b"/local/domain/5/" + b"b" * 2049]
    # From Xen 4.18 on, C xenstored's limit is the per-domain quota
    # path-max, and a socket connection belongs to no domain.
    if not expect(daemon, {"default": True, "xenstored-4.20": False,
                           "xenstored-4.22": False}):
        for path in too_long + [b"/" + b"a" * 3071]:
            client.write(path, b"v" * 1000)
            assert client.read(path) == b"v" * 1000
        return
    for path in too_long:
        with pytest.raises(PyXSError) as info:
            client.write(path, b"v" * 1000)
        assert info.value.args[0] == errno.EINVAL
        text = str(info.value)
        assert "WRITE" in text and len(text) < 200


def test_control(daemon, client):
    assert client.control("print", "hello from pyxs").rstrip(b"\x00") == b"OK"
    help_text = client.control(b"help")
    if expect(daemon.kind, {"default": True, "oxenstored": False}):
        assert b"print" in help_text and b"quota" in help_text
        assert errno_of(client.control, "no-such-command") == errno.EINVAL
    else:
        # oxenstored answers OK to any command it does not know.
        assert help_text.rstrip(b"\x00") == b"OK"
        assert client.control("no-such-command").rstrip(b"\x00") == b"OK"
    with pytest.raises(TypeError):
        client.control()
    with pytest.raises(InvalidPayload):
        client.control("print", "a\x00b")


def test_reset_watches(client):
    m = client.monitor()
    m.watch(b"/rw", b"old")
    assert m.get(BOUND) == (b"/rw", b"old")
    client.transaction()
    client.write(b"/rw/in-tx", b"v")
    client.reset_watches()
    assert client.tx_id == 0
    client.write(b"/rw/after", b"v")
    assert events_before_marker(m) == []  # the watch is gone
    assert not client.exists(b"/rw/in-tx")  # so is the transaction
    with pytest.raises(PyXSError) as info:
        client.commit()
    assert info.value.args[0] == errno.EINVAL


# -- pyxs 0.3 names ----------------------------------------------------------

def test_deprecated_aliases(client):
    def deprecated(new_name, call, *args):
        with pytest.warns(DeprecationWarning, match=new_name) as record:
            result = call(*args)
        assert record[0].filename == __file__  # points at the caller
        return result

    client.write(b"/old/a", b"1")
    assert deprecated("list", client.ls, b"/old") == [b"a"]
    deprecated("set_perms", client.set_permissions, b"/old/a", [b"n0", b"r2"])
    assert deprecated("get_perms", client.get_permissions, b"/old/a") == \
        [b"n0", b"r2"]
    deprecated("delete", client.rm, b"/old/a")
    assert client.list(b"/old") == []
    tx_id = deprecated("transaction", client.transaction_start)
    assert tx_id == client.tx_id != 0
    client.write(b"/old/b", b"2")
    assert deprecated("commit", client.transaction_end) is True
    assert client.read(b"/old/b") == b"2"
    deprecated("transaction", client.transaction_start)
    client.write(b"/old/c", b"3")
    deprecated("rollback", client.transaction_end, False)
    assert not client.exists(b"/old/c")


# -- connection life cycle ---------------------------------------------------

def test_clients_sharing_a_router(daemon):
    router = Router(UnixSocketConnection(daemon.socket_path))
    one, two = Client(router=router), Client(router=router)
    with one, two:
        assert one.router is two.router is router
        with two.monitor() as m:
            m.watch(b"/shared", b"t")
            assert m.get(BOUND) == (b"/shared", b"t")
            one.write(b"/shared/k", b"v")
            assert two.read(b"/shared/k") == b"v"
            assert m.get(BOUND) == (b"/shared/k", b"t")
        one.close()
        assert router.thread.is_alive()
        assert two.read(b"/shared/k") == b"v"
    router.thread.join(BOUND)
    assert not router.thread.is_alive()
    with pytest.raises(ConnectionError):
        one.read(b"/shared/k")


def test_connect_and_close_are_idempotent(daemon):
    c = daemon.client(timeout=BOUND)
    with pytest.raises(ConnectionError, match="not connected"):
        c.read(b"/")
    c.connect()
    c.connect()
    c.write(b"/x", b"1")
    assert c.read(b"/x") == b"1"
    c.close()
    c.close()
    assert not c.router.thread.is_alive()
    with pytest.raises(ConnectionError):
        c.read(b"/x")


def test_context_manager_refuses_uncommitted_transaction(daemon):
    with pytest.raises(PyXSError, match="uncommitted"):
        with daemon.client(timeout=BOUND) as c:
            c.transaction()
            c.write(b"/u", b"v")
    assert not c.router.thread.is_alive()
    with daemon.client(timeout=BOUND) as other:
        assert not other.exists(b"/u")
    # An error inside the block is not masked by the open transaction.
    with pytest.raises(KeyError):
        with daemon.client(timeout=BOUND) as c:
            c.transaction()
            raise KeyError("mine")


def test_missing_socket(tmp_path):
    path = str(tmp_path / "no-such-socket")
    c = Client(unix_socket_path=path)
    with pytest.raises(ConnectionError) as info:
        c.connect()
    assert path in str(info.value)
    with pytest.raises(ConnectionError, match="no-such-socket"):
        with pyxs.monitor(unix_socket_path=path):
            pass


def test_per_client_timeout(daemon):
    with daemon.client(timeout=0.3) as c:
        c.write(b"/t", b"before")
        with stopped(daemon):
            started = time.monotonic()
            with pytest.raises(TimeoutError) as info:
                c.read(b"/t")
            elapsed = time.monotonic() - started
            assert isinstance(info.value, builtins.TimeoutError)
            assert 0.25 <= elapsed < 5
            assert "READ" in str(info.value)
        # The late reply to the abandoned request is dropped; later
        # requests get their own replies.
        c.write(b"/t", b"after")
        assert c.read(b"/t") == b"after"
        assert c.list(b"/") is not None


def test_no_timeout_waits_for_a_stopped_daemon(daemon):
    with daemon.client() as c:
        sent = SendLog(c)
        result = []
        with stopped(daemon):
            reader = threading.Thread(
                target=lambda: result.append(c.read(b"/", b"")))
            reader.start()
            sent.wait_for(1)
            assert not result  # blocked while the daemon sleeps
        reader.join(BOUND)
        assert result == [b""]
