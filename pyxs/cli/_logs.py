"""pyxs's log messages on stderr, for ``-v`` and ``-q``."""

import contextlib
import logging
import sys
from typing import Iterator

__all__ = ["logging_to_stderr"]


class _StderrHandler(logging.Handler):
    """Logs to whatever ``sys.stderr`` is at the time of each message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def logging_to_stderr(verbosity: int) -> Iterator[None]:
    """Sends pyxs's log messages to stderr: WARNING, -v INFO, -vv DEBUG."""
    logger = logging.getLogger("pyxs")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(
        "%(name)s: %(levelname)s: %(message)s"))
    level = max(logging.DEBUG, logging.WARNING - 10 * verbosity)
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
