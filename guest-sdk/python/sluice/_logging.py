"""`get_run_logger()`: a `logging.Logger` whose records become the run's log lines."""

import logging

from . import _core

_LEVEL_NAMES = (
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
    (logging.DEBUG, "debug"),
)


class _HostHandler(logging.Handler):
    """Sends each record to the host's log (or stderr outside a run)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            level = next((name for number, name in _LEVEL_NAMES if record.levelno >= number), "trace")
            if _core._Run.active():
                _core._Run.host.log(level, message)
            else:
                logging.lastResort.handle(record)
        except Exception:  # noqa: BLE001 - logging must never fail the run
            self.handleError(record)


_logger = logging.getLogger("sluice.run")
_logger.setLevel(logging.DEBUG)
_logger.propagate = False
_logger.addHandler(_HostHandler())


def get_run_logger(*_args, **_kwargs) -> logging.Logger:
    """The logger of the current flow or task run, as in Prefect."""
    return _logger
