"""Command line: ``python -m pyxs.server --socket PATH``.

Runs the embedded daemon in the foreground until SIGTERM or SIGINT, then
removes its sockets (and saves the tree with ``--persist``) and exits 0.
"""

import argparse
import logging
import signal
import sys
from typing import List, Optional, Tuple

from .daemon import XenStoreServer
from .features import RELEASES


def _domain_socket(text: str) -> Tuple[int, str]:
    domid, sep, path = text.partition("=")
    if not sep or not domid.isdigit() or not path:
        raise argparse.ArgumentTypeError("expected DOMID=PATH, got %r" % text)
    return int(domid), path


def main(argv: Optional[List[str]] = None) -> int:
    """Parses arguments and serves until told to stop."""
    parser = argparse.ArgumentParser(
        prog="python -m pyxs.server",
        description="pyxs's embedded XenStore daemon")
    parser.add_argument("--socket", required=True,
                        help="Unix socket for privileged (dom0) clients")
    parser.add_argument("--domain-socket", action="append", default=[],
                        type=_domain_socket, metavar="DOMID=PATH",
                        help="extra socket whose clients act as DOMID")
    parser.add_argument("--persist", metavar="FILE",
                        help="load the tree from FILE, save it on exit")
    parser.add_argument("--xen", choices=RELEASES, default=RELEASES[0],
                        help="speak this Xen release's protocol "
                        "(default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose
                        else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")

    server = XenStoreServer(args.socket, persist=args.persist, xen=args.xen)
    for domid, path in args.domain_socket:
        server.add_listener(path, domid)

    def _stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
