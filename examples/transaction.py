"""Increments a counter in a transaction, safely against other writers.

Usage: ``python3 examples/transaction.py [PATH] [--times N]``; PATH defaults
to ``/examples/counter``. Start several copies at once: no increment is lost,
because :meth:`pyxs.Client.run_transaction` redoes a transaction whose commit
met a conflicting change.
"""

import argparse
import os
import sys

# Run from a checkout: use the repository's pyxs, not an installed one.
_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_TOP, "pyxs", "__init__.py")):
    sys.path.insert(0, _TOP)

import pyxs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default="/examples/counter",
                        help="the counter (default: /examples/counter)")
    parser.add_argument("--times", type=int, default=1,
                        help="how many increments to make (default: 1)")
    args = parser.parse_args()
    if args.times < 1:
        parser.error("--times must be at least 1")
    path = args.path.encode("ascii")

    def increment(tx: pyxs.Client) -> int:
        # Runs inside the transaction; may run more than once.
        value = int(tx.read(path, default=b"0")) + 1
        tx.write(path, b"%d" % value)
        return value

    try:
        with pyxs.Client(timeout=10) as client:
            for _ in range(args.times):
                value = client.run_transaction(increment, attempts=50)
    except pyxs.PyXSError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    print("%s = %d" % (args.path, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
