"""Both sides of the binding differential test, behind one interface.

:class:`BindingSide` drives Xen's own ``xen.lowlevel.xs`` in a child
process (the binding needs ``LD_LIBRARY_PATH`` set before its process
starts), :class:`PyxsSide` drives ``pyxs._compat`` in this one. A call's
outcome is a plain, picklable value: ``("ok", typed(result))`` or
``("raise", exception type name, typed(args))``, where :func:`typed` keeps
every type (``True`` is not ``1``, ``b"a"`` is not ``"a"``). Watch tokens
are :class:`TokenRef` markers, turned into one fresh object per number on
each side and back into markers in results, so identity is compared too.

Run as a script, this module is the child: it reads pickled requests on
stdin and writes pickled outcomes on stdout.
"""

import glob
import os
import pickle
import select
import struct
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

Outcome = Tuple[Any, ...]

BINDING_TAG = "cpython-311"  # the ABI of Debian's xen-utils-4.17 binding


class TokenRef:
    """Stands for watch token number ``n`` on either side."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TokenRef) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("TokenRef", self.n))

    def __repr__(self) -> str:
        return "TokenRef(%d)" % self.n


def typed(value: Any) -> Any:
    """``value`` with the type of every part made explicit."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), typed(v)) for k, v in value.items()))
    if isinstance(value, (bool, int, float, str, bytes, type(None),
                          TokenRef)):
        return (type(value).__name__, value)
    return (type(value).__name__, repr(value))


class _Tokens:
    def __init__(self) -> None:
        self.objects: Dict[int, Any] = {}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, TokenRef):
            if value.n not in self.objects:
                # Unhashable and compared by identity: the hardest token.
                self.objects[value.n] = ["token", value.n]
            return self.objects[value.n]
        if isinstance(value, tuple):
            return tuple(self.resolve(v) for v in value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def mark(self, value: Any) -> Any:
        for n, obj in self.objects.items():
            if value is obj:
                return TokenRef(n)
        if isinstance(value, tuple):
            return tuple(self.mark(v) for v in value)
        if isinstance(value, list):
            return [self.mark(v) for v in value]
        return value


class _Driver:
    """Runs requests against one implementation (in whatever process)."""

    def __init__(self, make: Any) -> None:
        self.make = make  # socket path -> handle
        self.handles: Dict[int, Any] = {}
        self.tokens = _Tokens()

    def handle(self, request: Tuple[Any, ...]) -> Outcome:
        kind = request[0]
        try:
            if kind == "open":
                _, hid, path = request
                self.handles[hid] = self.make(path)
                return ("ok", typed(None))
            if kind == "readable":
                _, hid, timeout = request
                fd = self.handles[hid].fileno()
                return ("ok", typed(bool(select.select([fd], [], [],
                                                       timeout)[0])))
            _, hid, method, args, kwargs = request
            func = getattr(self.handles[hid], method)
            result = func(*self.tokens.resolve(args),
                          **self.tokens.resolve(kwargs))
            return ("ok", typed(self.tokens.mark(result)))
        except Exception as exc:
            return ("raise", type(exc).__name__,
                    typed(self.tokens.mark(exc.args)))

    def close(self) -> None:
        for handle in self.handles.values():
            try:
                handle.close()
            except Exception:
                pass
        self.handles.clear()


def _binding_handle(path: str) -> Any:
    from xen.lowlevel.xs import xs  # noqa: PLC0415 -- in the child only
    os.environ["XENSTORED_PATH"] = path  # libxenstore reads it in xs_open
    return xs()


def _send(stream: Any, value: Any) -> None:
    data = pickle.dumps(value)
    stream.write(struct.pack("<I", len(data)) + data)
    stream.flush()


def _recv(stream: Any) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError("the binding process ended")
    data = stream.read(struct.unpack("<I", head)[0])
    return pickle.loads(data)


def find_binding(xen_root: str) -> Optional[str]:
    """The ``lib/python`` directory holding ``xen/lowlevel/xs*.so``."""
    found = glob.glob(os.path.join(
        xen_root, "usr/lib/xen-*/lib/python/xen/lowlevel/xs.%s-*.so"
        % BINDING_TAG))
    if not found:
        return None
    return os.path.dirname(os.path.dirname(os.path.dirname(found[0])))


def binding_python() -> Optional[str]:
    """An interpreter whose ABI matches the binding: this one, if it is
    CPython 3.11, else a ``python3.11`` on PATH."""
    if sys.implementation.name == "cpython" and \
            sys.version_info[:2] == (3, 11):
        return sys.executable
    import shutil
    return shutil.which("python3.11")


class BindingSide:
    """``xen.lowlevel.xs`` in a child process."""

    name = "xen.lowlevel.xs"
    where = ""  # what ran, for the summary

    def __init__(self, python: str, pythonpath: str,
                 env: Dict[str, str]) -> None:
        child_env = dict(os.environ)
        child_env.update(env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            [pythonpath, os.path.dirname(os.path.abspath(__file__))])
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=child_env)
        self.request(("hello",))

    def request(self, request: Tuple[Any, ...]) -> Outcome:
        _send(self.process.stdin, request)
        return _recv(self.process.stdout)  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.request(("reset",))
        except (EOFError, OSError):
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.wait(10)


class PyxsSide:
    """``pyxs._compat`` in this process."""

    name = "pyxs._compat"

    def __init__(self) -> None:
        from pyxs._compat import xs
        self.driver = _Driver(lambda path: xs(unix_socket_path=path))

    def request(self, request: Tuple[Any, ...]) -> Outcome:
        if request[0] == "reset":
            self.driver.close()
            self.driver = _Driver(self.driver.make)
            return ("ok", typed(None))
        # Through pickle, as to the child: the same object identities.
        return self.driver.handle(pickle.loads(pickle.dumps(request)))

    def close(self) -> None:
        self.request(("reset",))


def _child() -> None:
    from xen.lowlevel.xs import Error  # noqa: F401 -- fail early if missing
    driver = _Driver(_binding_handle)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the pipe
    while True:
        try:
            request = _recv(stdin)
        except EOFError:
            break
        if request[0] == "hello":
            outcome: Outcome = ("ok", typed(None))
        elif request[0] == "reset":
            driver.close()
            driver = _Driver(_binding_handle)
            outcome = ("ok", typed(None))
        else:
            outcome = driver.handle(request)
        _send(stdout, outcome)
    driver.close()


def transcript_lines(steps: List[Tuple[str, Outcome]]) -> List[str]:
    return ["%s -> %r" % step for step in steps]


if __name__ == "__main__":
    # Run as the module, not as __main__: requests pickle TokenRef as
    # bindingside.TokenRef, and isinstance() must see that class.
    import bindingside
    bindingside._child()
