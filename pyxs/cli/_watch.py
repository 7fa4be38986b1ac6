"""``pyxs watch``: prints events as they arrive, until told to stop."""

from typing import Any, Dict

from ..helpers import validate_watch_path
from ._output import emit, emit_json, text
from ._session import Session

__all__ = ["cmd_watch"]


def cmd_watch(args: Dict[str, Any]) -> int:
    """Prints ``path token`` for each event; the token is the watched path.

    Waits for events forever unless ``--timeout`` was given: then that is
    the longest wait for each event (exit status 3 when it runs out).
    """
    import logging
    log = logging.getLogger("pyxs.cli")
    paths = [validate_watch_path(path) for path in args["paths"]]
    patience = args["timeout"] if "timeout" in args["given"] else None
    client = Session(args).client
    try:
        with client.monitor() as monitor:
            for path in paths:
                monitor.watch(path, path, depth=args["depth"])
                log.info("watching %s", text(path))
            seen = 0
            for path, token in monitor.wait(timeout=patience):
                if args["json"]:
                    emit_json({"path": text(path), "token": text(token)})
                elif args["path_only"]:
                    emit(text(path))
                else:
                    emit("%s %s" % (text(path), text(token)))
                seen += 1
                if seen == args["count"]:
                    break
    finally:
        client.close()
    return 0
