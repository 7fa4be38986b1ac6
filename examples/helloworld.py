"""Hello, XenStore: write a value, read it back and list its directory.

Run it against any daemon; the socket comes from ``XENSTORED_PATH`` (or
libxenstore's default). Without Xen::

    python3 -m pyxs sandbox -- python3 examples/helloworld.py
"""

import os
import sys

# Run from a checkout: use the repository's pyxs, not an installed one.
_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_TOP, "pyxs", "__init__.py")):
    sys.path.insert(0, _TOP)

import pyxs  # noqa: E402

BASE = b"/examples/helloworld"


def main() -> int:
    try:
        client = pyxs.Client(timeout=10)
        client.connect()
    except pyxs.ConnectionError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    with client:
        print("connected to %s" % client.router.connection.path)

        client.write(BASE + b"/greeting", b"Hello, XenStore!")
        client.write(BASE + b"/answer", "42")  # str values are encoded
        print("wrote %s/greeting and %s/answer" % (BASE.decode(),
                                                   BASE.decode()))

        greeting = client.read(BASE + b"/greeting")
        print("read %s/greeting = %r" % (BASE.decode(), greeting))

        names = sorted(client.list(BASE))
        print("list %s = %s" % (BASE.decode(), ", ".join(
            name.decode() for name in names)))

        missing = client.read(BASE + b"/missing", default=b"(none)")
        print("read %s/missing with a default = %r" % (BASE.decode(),
                                                       missing))

        client.delete(BASE)
        print("deleted %s; exists: %s" % (BASE.decode(),
                                         client.exists(BASE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
