"""Prints a XenStore subtree with its values, like ``xenstore-ls``.

Usage: ``python3 examples/ls.py [PATH] [--depth N]``; PATH defaults to
``/``. ``--depth`` shows how :meth:`pyxs.Client.walk` prunes: emptying the
``children`` list it yields stops the walk from descending.
"""

import argparse
import errno
import os
import sys

# Run from a checkout: use the repository's pyxs, not an installed one.
_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_TOP, "pyxs", "__init__.py")):
    sys.path.insert(0, _TOP)

import pyxs  # noqa: E402


def depth_of(path: bytes, top: bytes) -> int:
    """How many levels ``path`` lies below ``top``."""
    if path == top:
        return 0
    rest = path[len(top):].strip(b"/")
    return rest.count(b"/") + 1


def show(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace").replace('"', '\\"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default="/",
                        help="the subtree to print (default: /)")
    parser.add_argument("--depth", type=int, default=None,
                        help="print at most this many levels below PATH")
    args = parser.parse_args()
    top = args.path.encode("ascii")

    try:
        with pyxs.Client(timeout=10) as client:
            for path, value, children in client.walk(top):
                depth = depth_of(path, top)
                name = path if depth == 0 else path.rsplit(b"/", 1)[1]
                print('%s%s = "%s"' % ("  " * depth, name.decode("ascii"),
                                       show(value)))
                if args.depth is not None and depth >= args.depth:
                    children[:] = []  # prune: do not descend further
    except pyxs.PyXSError as exc:
        if exc.errno == errno.ENOENT:
            print("error: %s does not exist" % args.path, file=sys.stderr)
        else:
            print("error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
