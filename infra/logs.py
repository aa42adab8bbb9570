"""Structured logs: one JSON object per line (or a readable console line), via structlog."""

from __future__ import annotations

import logging
import sys
import time

import structlog


def configure_logging(level: str, log_format: str) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Library logs (uvicorn, aiokafka, eventsourcing) go through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream gives its loggers a coloured handler of their own and stops them propagating:
    # its lines (rebalances, the ledger consumer's) would bypass the renderer.
    faststream = logging.getLogger("faststream")
    faststream.handlers[:] = []
    faststream.propagate = True
    faststream.setLevel(logging.NOTSET)  # and obey CREDITS_LOG_LEVEL like every other logger
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # Client libraries log every attempt while a server is away (aiokafka each reconnect and
    # each retried request, psycopg_pool and asyncpg's pool each connection they fail to
    # replace): hundreds of lines a minute. Each of their messages is let through once in a
    # while; the components log the outage itself once, as a change of their readiness.
    handler.addFilter(OncePerWindow(LIBRARY_LOGGERS, LIBRARY_REPEAT_SECONDS))


# Loggers of client libraries whose repeated messages are thinned out, and how often one of
# their messages may repeat.
LIBRARY_LOGGERS = ("aiokafka", "psycopg", "asyncpg")
LIBRARY_REPEAT_SECONDS = 300.0
# A bound on the messages remembered (templates, not formatted lines: there are few).
MAX_REMEMBERED_MESSAGES = 1000


class OncePerWindow(logging.Filter):
    """Lets a message of the given loggers through once per `window_seconds`.

    Messages are told apart by logger and template (`record.msg` before its arguments are
    filled in), so "Unable connect to node %s" repeats are one message whatever the node.
    """

    def __init__(self, loggers: tuple[str, ...], window_seconds: float) -> None:
        super().__init__()
        self.loggers = loggers
        self.window_seconds = window_seconds
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] not in self.loggers:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window_seconds:
            return False
        if len(self._last) >= MAX_REMEMBERED_MESSAGES:
            self._last.clear()
        self._last[key] = now
        return True
