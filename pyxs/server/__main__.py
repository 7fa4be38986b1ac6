"""Command line: ``python -m pyxs.server --socket PATH``.

Runs the embedded daemon in the foreground until SIGTERM or SIGINT, then
removes its sockets (and compacts the journal into a snapshot with
``--persist``) and exits 0. A store file it cannot load makes it exit 2
with a message naming the file, which it leaves untouched.
"""

import argparse
import logging
import signal
import sys
from typing import List, Optional, Tuple

from .daemon import XenStoreServer
from .persist import FSYNC_POLICIES, StoreFileError


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
                        help="load the tree from FILE and journal every "
                        "change to FILE.journal before replying")
    parser.add_argument("--fsync", choices=FSYNC_POLICIES,
                        default="periodic",
                        help="with --persist, fsync the journal before "
                        "every reply (always), every --fsync-interval "
                        "seconds (periodic, the default) or never; a "
                        "daemon crash loses nothing acknowledged either way")
    parser.add_argument("--fsync-interval", type=float, default=1.0,
                        metavar="SECONDS",
                        help="seconds between periodic fsyncs (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose
                        else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")

    try:
        server = XenStoreServer(args.socket, persist=args.persist,
                                fsync=args.fsync,
                                fsync_interval=args.fsync_interval)
    except StoreFileError as error:
        parser.exit(2, "%s: error: %s\n" % (parser.prog, error))
    for domid, path in args.domain_socket:
        server.add_listener(path, domid)

    def _stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve_forever()
    if server.journal_error is not None:
        sys.stderr.write("%s: error: the journal could not be written (%s); "
                         "stopped without acknowledging the changes it "
                         "lacks\n" % (parser.prog, server.journal_error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
