"""Unit tests of the pure layer: store, tree operations, transactions."""

import pytest

from pyxs.server import tree
from pyxs.server.errors import XenStoreError
from pyxs.server.perms import BOTH, NONE, READ, WRITE, Perm, Who, parse_perms
from pyxs.server.quotas import Quotas
from pyxs.server.store import BaseView, Store, Transaction

DOM0 = Who(0)
QUOTAS = Quotas()


def error_of(call, *args) -> str:
    with pytest.raises(XenStoreError) as info:
        call(*args)
    return info.value.name


def test_initial_tree_and_generations_match_c() -> None:
    store = Store()
    assert store.nodes[b"/"].children == (b"tool",)
    assert store.nodes[b"/tool"].children == (b"xenstored",)
    assert [store.nodes[p].generation for p in
            (b"/", b"/tool", b"/tool/xenstored")] == [1, 2, 3]
    assert store.generation == 4


def test_write_creates_parents_leaf_first() -> None:
    store = Store()
    view = BaseView(store)
    tree.write(view, DOM0, QUOTAS, b"/a/b/c", b"v")
    gens = {p: store.nodes[p].generation for p in (b"/a/b/c", b"/a/b",
                                                    b"/a", b"/")}
    assert gens == {b"/a/b/c": 4, b"/a/b": 5, b"/a": 6, b"/": 7}
    assert store.nodes[b"/a"].perms == (Perm(0, NONE),)


def test_remove_costs_two_generations_per_node() -> None:
    store = Store()
    view = BaseView(store)
    tree.write(view, DOM0, QUOTAS, b"/x/a", b"")   # 4, 5, 6
    change = tree.remove(view, DOM0, QUOTAS, b"/x")
    assert store.nodes[b"/"].generation == 10
    assert dict(change.removed).keys() == {b"/x", b"/x/a"}
    assert b"/x" not in store.nodes and b"/x/a" not in store.nodes


def test_remove_missing_is_ok_under_existing_parent_only() -> None:
    view = BaseView(Store())
    assert tree.remove(view, DOM0, QUOTAS, b"/nope") is None
    assert error_of(tree.remove, view, DOM0, QUOTAS, b"/no/pe") == "ENOENT"
    assert error_of(tree.remove, view, DOM0, QUOTAS, b"/") == "EINVAL"


def test_directory_part_chunks_whole_names() -> None:
    store = Store()
    view = BaseView(store)
    for index in range(600):
        tree.write(view, DOM0, QUOTAS, b"/big/child%04d" % index, b"")
    node = store.nodes[b"/big"]
    first = tree.directory_part(node, 0)
    generation = b"%d\x00" % node.generation
    assert len(first) == 4091 + len(generation) - 1
    assert first.startswith(generation) and first.endswith(b"child0408\x00")
    last = tree.directory_part(node, 4090)
    assert last.endswith(b"child0599\x00\x00")
    assert tree.directory_part(node, 99999) == generation + b"\x00"
    assert error_of(tree.directory, node) == "E2BIG"


def test_transaction_sees_its_own_writes_and_commits_in_access_order() -> None:
    store = Store()
    tx = Transaction(store, 1)             # costs generation 4
    tree.write(tx, DOM0, QUOTAS, b"/x/y", b"v")
    assert b"/x" not in store.nodes
    assert tx.get(b"/x/y").value == b"v"
    tx.commit()
    assert [store.nodes[p].generation for p in (b"/x/y", b"/x", b"/")] \
        == [8, 9, 10]


def test_transaction_conflicts_on_anything_it_looked_at() -> None:
    store = Store()
    base = BaseView(store)
    tx = Transaction(store, 1)
    assert error_of(tree.lookup, tx, DOM0, b"/missing") == "ENOENT"
    tree.write(base, DOM0, QUOTAS, b"/other", b"")  # rewrites "/"
    assert error_of(tx.commit) == "EAGAIN"


def test_transaction_ignores_unrelated_changes() -> None:
    store = Store()
    tx = Transaction(store, 1)
    tree.lookup(tx, DOM0, b"/tool/xenstored")
    tree.write(BaseView(store), DOM0, QUOTAS, b"/other", b"")
    tx.commit()


def test_permissions_owner_acl_default() -> None:
    perms = parse_perms([b"r5", b"w6", b"n7"])
    assert Who(5).access(perms) & BOTH == BOTH      # owner
    assert Who(6).access(perms) == WRITE
    assert Who(7).access(perms) == NONE
    assert Who(8).access(perms) == READ             # default entry
    assert Who(9, target=5).access(perms) & BOTH == BOTH
    assert Who(0).may(parse_perms([b"n3"]), BOTH)


@pytest.mark.parametrize("bad", [[], [b"x0"], [b"r"], [b"b-1"]])
def test_bad_permissions_are_einval(bad) -> None:
    assert error_of(parse_perms, bad) == "EINVAL"


def test_unprivileged_create_inherits_with_new_owner() -> None:
    store = Store()
    base = BaseView(store)
    tree.write(base, DOM0, QUOTAS, b"/d", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/d", parse_perms([b"n0", b"w5"]))
    tree.write(base, Who(5), QUOTAS, b"/d/x/y", b"v")
    assert store.nodes[b"/d/x/y"].perms == parse_perms([b"n5", b"w5"])
    # dom0 keeps the parent's owner
    tree.write(base, DOM0, QUOTAS, b"/d/z", b"v")
    assert store.nodes[b"/d/z"].perms == parse_perms([b"n0", b"w5"])


def test_unprivileged_errors() -> None:
    store = Store()
    base = BaseView(store)
    tree.write(base, DOM0, QUOTAS, b"/d/hidden", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/d", parse_perms([b"n0", b"r5"]))
    who = Who(5)
    assert error_of(tree.lookup, base, who, b"/d/hidden") == "EACCES"
    assert error_of(tree.lookup, base, who, b"/d/nope") == "ENOENT"
    assert error_of(tree.lookup, base, who, b"/tool/nope") == "EACCES"
    assert error_of(tree.write, base, who, QUOTAS, b"/d/new", b"") \
        == "EACCES"
    tree.write(base, DOM0, QUOTAS, b"/mine", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/mine", parse_perms([b"n5"]))
    assert error_of(tree.set_perms, base, who, QUOTAS, b"/mine",
                    parse_perms([b"n6"])) == "EPERM"
    assert error_of(tree.set_perms, base, who, QUOTAS, b"/mine",
                    parse_perms([b"n5", b"r1", b"r2", b"r3", b"r4", b"r6"])) \
        == "ENOSPC"


def test_node_size_quota_counts_header_perms_value_children() -> None:
    store = Store()
    base = BaseView(store)
    tree.write(base, DOM0, QUOTAS, b"/q", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/q", parse_perms([b"n5"]))
    who = Who(5)
    tree.write(base, who, QUOTAS, b"/q/v", b"x" * 2015)
    assert error_of(tree.write, base, who, QUOTAS, b"/q/v", b"x" * 2016) \
        == "ENOSPC"


def test_node_count_quota() -> None:
    store = Store()
    base = BaseView(store)
    tree.write(base, DOM0, QUOTAS, b"/q", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/q", parse_perms([b"n5"]))
    small = Quotas(nodes=3)
    tree.write(base, Who(5), small, b"/q/a", b"")
    tree.write(base, Who(5), small, b"/q/b", b"")
    assert error_of(tree.write, base, Who(5), small, b"/q/c/d", b"") \
        == "ENOSPC"


def test_release_removes_owned_nodes_but_never_the_root() -> None:
    store = Store()
    base = BaseView(store)
    tree.write(base, DOM0, QUOTAS, b"/own/sub", b"")
    tree.write(base, DOM0, QUOTAS, b"/keep", b"")
    tree.set_perms(base, DOM0, QUOTAS, b"/own", parse_perms([b"b3"]))
    tree.set_perms(base, DOM0, QUOTAS, b"/", parse_perms([b"b3"]))
    changes = tree.release_domain(base, 3)
    assert [c.path for c in changes] == [b"/own"]
    assert b"/own/sub" not in store.nodes and b"/keep" in store.nodes
