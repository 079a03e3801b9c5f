"""structlog, configured once per process.

Services log JSON lines (one event per line, machine-readable); on a terminal the output is
coloured key=value. Context is bound, not repeated: ``log.bind(request_id=..., container=...)``
or ``structlog.contextvars.bind_contextvars`` in a request's scope.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(service: str, *, json: bool | None = None, level: str | None = None) -> None:
    """Configure structlog and stdlib logging for this process. Idempotent.

    ``json`` defaults to "not a terminal"; ``level`` to ``$DOCKYARD_LOG_LEVEL`` or INFO.
    """
    level_name = (level or os.environ.get("DOCKYARD_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that log through stdlib (aiohttp, nats) go to stderr at WARNING and up.
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s: %(message)s"
    )
