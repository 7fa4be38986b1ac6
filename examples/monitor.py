"""Watches a XenStore path and prints every change below it.

Usage: ``python3 examples/monitor.py PATH [--count N] [--timeout S]``.

The first event arrives right away: XenStore fires every new watch once.
``--count`` stops after N events; ``--timeout`` gives up (exit status 2)
when no event arrives for S seconds. Ctrl-C stops it too.
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
    parser.add_argument("path", help="the path to watch, or @introduceDomain "
                                     "/ @releaseDomain")
    parser.add_argument("--count", type=int, default=None,
                        help="stop after this many events")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up when no event arrives for this many "
                             "seconds")
    args = parser.parse_args()

    seen = 0
    try:
        with pyxs.Client(timeout=10) as client, client.monitor() as monitor:
            monitor.watch(args.path, b"monitor-example")
            # Printed once the daemon has accepted the watch: every change
            # from now on produces an event.
            print("watching %s" % args.path, flush=True)
            if args.count is not None and args.count <= 0:
                return 0
            for path, _token in monitor.wait(timeout=args.timeout):
                print(path.decode("ascii", "backslashreplace"), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    except pyxs.TimeoutError:
        print("no event within %g s, giving up after %d event(s)"
              % (args.timeout, seen), file=sys.stderr)
        return 2
    except pyxs.PyXSError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
