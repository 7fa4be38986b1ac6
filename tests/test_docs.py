"""The documentation's examples run as written, against a real daemon.

Every ``>>>`` example of every document in docs/ runs under doctest, and
every Python code block of the documents in :data:`CODE_DOCS` runs too:
``.. code-block:: python`` blocks, and ``::`` literal blocks that parse as
Python. The blocks of a document run in order, in one namespace, against
one fresh embedded daemon seeded as a Xen host's dom0 is
(:func:`pyxs.testing.seed_dom0`), with ``XENSTORED_PATH`` pointing at it.
Before each block ``c`` is a connected :class:`pyxs.Client` (the name the
tutorial uses), or a connected :class:`pyxs.aio.Client` for a block that
uses ``await`` at its top level, which then runs in an event loop.

What a reader supplies (a guest's ring page, a loop's end) the document
supplies in comments the reader does not see, read by this module:

``.. test-setup: CODE``
    runs CODE before the next block, with the helpers of :class:`Harness`
    (``stop_after_events``, ``replace``, ``xenbus``, ``daemon``) at hand.
``.. test-then: CODE``
    runs CODE after the block before it.
"""

import ast
import asyncio
import doctest
import os
import re
import textwrap
import traceback
from typing import Any, Dict, List, Optional

import pytest

import pyxs
import pyxs.aio
import pyxs.connection
from pyxs.aio import _monitor as aio_monitor
from pyxs.monitor import Monitor
from pyxs.testing import XenStoreDaemon, seed_dom0
from pyxs.testing.xenbus import XenBusRelay

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(TOP, "docs")
#: Documents whose every Python block runs (``>>>`` examples run in all).
CODE_DOCS = ["tutorial.rst"]

_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\S*)\s*$")
_COMMENT = re.compile(r"^\s*\.\. test-(setup|then):\s?(.*)$")


class Block:
    """One example: where it is, how it runs, what comes before and after."""

    def __init__(self, doc: str, line: int, kind: str, source: str,
                 setup: List[str]) -> None:
        self.doc = doc
        self.line = line  # 1-based, of the block's first line
        self.kind = kind  # "python" or "pycon"
        self.source = source
        self.setup = setup
        self.then: List[str] = []

    def __repr__(self) -> str:
        return "%s:%d" % (self.doc, self.line)


def _body(lines: List[str], start: int, indent: int) -> "tuple[int, str]":
    """The indented body after lines[start - 1]: (its first line, text)."""
    index = start
    while index < len(lines) and (not lines[index].strip() or re.match(
            r"^\s*:[\w-]+:", lines[index])):
        index += 1  # blank lines and directive options
    first = index
    while index < len(lines) and (not lines[index].strip() or (
            len(lines[index]) - len(lines[index].lstrip()) > indent)):
        index += 1
    return first, textwrap.dedent("\n".join(lines[first:index])).strip()


def _is_python(text: str) -> bool:
    try:
        compile(text, "<block>", "exec", ast.PyCF_ONLY_AST
                | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0))
    except SyntaxError:
        return False
    return True


def blocks(doc: str) -> List[Block]:
    """The runnable examples of docs/``doc``, in order."""
    with open(os.path.join(DOCS, doc), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    found: List[Block] = []
    setup: List[str] = []
    for number, line in enumerate(lines):
        comment = _COMMENT.match(line)
        if comment:
            if comment.group(1) == "setup":
                setup.append(comment.group(2))
            elif found:
                found[-1].then.append(comment.group(2))
            continue
        directive = _DIRECTIVE.match(line)
        literal = line.rstrip().endswith("::") and not line.lstrip(
        ).startswith("..")
        if not directive and not literal:
            continue
        indent = len(line) - len(line.lstrip())
        first, text = _body(lines, number + 1, indent)
        language = directive.group(2) if directive else ""
        if text.startswith(">>>"):
            kind = "pycon"
        elif doc not in CODE_DOCS:
            continue
        elif language == "python" or (not language and _is_python(text)):
            kind = "python"
        else:
            continue
        found.append(Block(doc, first + 1, kind, text, setup))
        setup = []
    return found


class _Enough(BaseException):
    """Ends an example's endless event loop (not an Exception: examples
    catch those)."""


class Harness:
    """Runs one document's blocks; its methods serve ``.. test-setup:``."""

    def __init__(self, monkeypatch: Any, daemon: XenStoreDaemon,
                 client: pyxs.Client) -> None:
        self.monkeypatch = monkeypatch
        self.daemon = daemon
        self.client = client
        self.namespace: Dict[str, Any] = {"__name__": "__docs__"}
        self.replacements: Dict[str, str] = {}
        self.relays: List[XenBusRelay] = []

    def stop_after_events(self, count: int,
                          poke: Optional[bytes] = None) -> None:
        """Lets the block's monitors hand out ``count`` events, then ends
        the block at its next wait (``wait()`` and ``async for`` take
        their events from ``get()``). ``poke``: a path to write as the last
        event is handed out, so a loop blocked in ``select()`` wakes up."""
        left = [count]

        def handed_out() -> None:
            if left[0] <= 0:
                raise _Enough()
            left[0] -= 1
            if left[0] == 0 and poke is not None:
                self.client.write(poke, b"")

        def get(real: Any) -> Any:
            def patched(monitor: Any, *args: Any, **kwargs: Any) -> Any:
                if left[0] <= 0:
                    raise _Enough()
                event = real(monitor, *args, **kwargs)
                handed_out()
                return event
            return patched

        async def aio_get(monitor: Any, *args: Any, **kwargs: Any) -> Any:
            if left[0] <= 0:
                raise _Enough()
            event = await real_aio_get(monitor, *args, **kwargs)
            handed_out()
            return event

        real_aio_get = aio_monitor.Monitor.get
        self.monkeypatch.setattr(Monitor, "get", get(Monitor.get))
        self.monkeypatch.setattr(aio_monitor.Monitor, "get", aio_get)

    def replace(self, text: str, replacement: str) -> None:
        """In the next block, the string literal ``text`` stands for
        ``replacement`` (a socket path the reader has, and we have not)."""
        self.replacements[repr(text)] = repr(replacement)
        self.replacements['"%s"' % text] = repr(replacement)

    def xenbus(self, domid: int = 0) -> None:
        """:func:`pyxs.connection.default_xenbus_path` names a XenBus
        device relaying to the daemon, as a guest's kernel provides."""
        relay = XenBusRelay(self.daemon.socket_path).start()
        self.relays.append(relay)
        self.monkeypatch.setattr(pyxs.connection, "default_xenbus_path",
                                 lambda: relay.device)

    def run(self, block: Block) -> None:
        source = block.source
        for text, replacement in self.replacements.items():
            source = source.replace(text, replacement)
        self.replacements = {}
        if block.kind == "pycon":
            self._doctest(block, source)
            return
        flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        code = compile(source, "%s:%d" % (block.doc, block.line), "exec",
                       flags)
        if code.co_flags & 0x80:  # CO_COROUTINE: await at the top level
            asyncio.run(self._await(code))
        else:
            exec(code, self.namespace)

    async def _await(self, code: Any) -> None:
        async with pyxs.aio.Client(timeout=30) as client:
            self.namespace["c"] = client
            await eval(code, self.namespace)

    def _doctest(self, block: Block, source: str) -> None:
        test = doctest.DocTestParser().get_doctest(
            source, self.namespace, repr(block), block.doc, block.line - 1)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        report: List[str] = []
        runner.run(test, out=report.append, clear_globs=False)
        if runner.failures:
            pytest.fail("".join(report), pytrace=False)

    def close(self) -> None:
        for relay in self.relays:
            relay.stop()


def _documents() -> List[str]:
    return sorted(name for name in os.listdir(DOCS) if name.endswith(".rst")
                  and any(True for _ in blocks(name)))


@pytest.mark.parametrize("doc", _documents())
def test_examples_run_as_written(doc: str, monkeypatch: Any) -> None:
    with XenStoreDaemon("embedded") as daemon:
        for name, value in daemon.environ().items():
            monkeypatch.setenv(name, value)
        with pyxs.Client(timeout=30) as client:
            seed_dom0(client)
            harness = Harness(monkeypatch, daemon, client)
            helpers = {"stop_after_events": harness.stop_after_events,
                       "replace": harness.replace, "xenbus": harness.xenbus,
                       "daemon": daemon}
            try:
                for block in blocks(doc):
                    _run_block(harness, helpers, block)
            finally:
                harness.close()


def _run_block(harness: Harness, helpers: Dict[str, Any],
               block: Block) -> None:
    namespace = harness.namespace
    namespace["c"] = harness.client
    outer = harness.monkeypatch
    with outer.context() as patches:
        harness.monkeypatch = patches
        try:
            for line in block.setup:
                exec(line, dict(namespace, **helpers), namespace)
            try:
                harness.run(block)
            except _Enough:
                pass
            for line in block.then:
                exec(line, dict(namespace, **helpers), namespace)
        except Exception:
            pytest.fail("%r failed:\n%s\n%s" % (
                block, textwrap.indent(block.source, "    "),
                traceback.format_exc()), pytrace=False)
        finally:
            harness.monkeypatch = outer


def test_every_tutorial_block_is_found() -> None:
    """The parser sees the tutorial's blocks: its Python and pycon blocks,
    not its console and message blocks."""
    found = blocks("tutorial.rst")
    kinds = [block.kind for block in found]
    assert kinds.count("pycon") == 2
    assert kinds.count("python") >= 25
    assert not any(block.source.startswith(("$", "cannot connect"))
                   for block in found)
