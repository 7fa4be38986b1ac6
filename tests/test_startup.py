"""What keeps the ``pyxs`` command's start-up cheap, checked without timing
(benchmarks/startup.py measures the time): the modules of a one-request
command import neither ``typing`` nor ``re``, and the records and patterns
that replace them behave as typing's NamedTuple and ``re`` do."""

import collections
import os
import re
import subprocess
import sys

import pytest

from pyxs._internal import Event, Packet
from pyxs._ops import Op, Operation
from pyxs._startup import LazyPattern, named_tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What ``pyxs read`` imports before it sends anything.
QUICK_PATH = ("import pyxs.cli, pyxs.cli._nodes, pyxs.cli._session, "
              "pyxs._replies")


def test_quick_path_imports_neither_typing_nor_re():
    code = ("import sys; %s; print(' '.join(sorted(name for name in "
            "('typing', 're', 'enum', 'pyxs.client', 'pyxs._features') "
            "if name in sys.modules)))" % QUICK_PATH)
    # -S: without site, which may import re itself (an editable install).
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True,
        env=dict(os.environ, PYTHONPATH=REPO), check=True)
    assert result.stdout.decode().split() == []


def test_records_are_named_tuples_with_their_docs_and_methods():
    for record in (Operation, Event):
        assert issubclass(record, tuple) and record.__module__ in (
            "pyxs._ops", "pyxs._internal")
        assert record.__doc__ and not record.__doc__.startswith(
            record.__name__ + "(")
    assert Event(b"/a", b"t")._replace(token=b"u") == (b"/a", b"u")
    assert Event(b"/a", b"t")._asdict() == {"path": b"/a", "token": b"t"}
    assert repr(Event(b"/a", b"t")) == "Event(path=b'/a', token=b't')"
    assert Op.name_of(Op.READ) == "READ" and Op._fields[2] == "READ"
    assert Packet._fields == ("op", "rq_id", "tx_id", "size", "payload")
    assert Event.__annotations__ == {"path": bytes, "token": bytes}


def test_named_tuple_refuses_defaults():
    class WithDefault:
        size: int
        name: str = "x"

    with pytest.raises(TypeError, match="WithDefault"):
        named_tuple(WithDefault)


def test_named_tuple_keeps_field_order():
    @named_tuple
    class Pair:
        second: int
        first: str

    assert Pair._fields == ("second", "first")
    assert Pair(1, "a").first == "a"
    assert collections.namedtuple("Pair", "second first")(1, "a") == \
        Pair(1, "a")


def test_lazy_pattern_matches_as_re_does():
    pattern = LazyPattern(rb"([0-9]+)\x00\Z")
    assert pattern.match(b"12\x00").group(1) == b"12"
    assert pattern.match(b"12") is None
    assert pattern.match(b"7\x00").span() == \
        re.compile(pattern.pattern).match(b"7\x00").span()
