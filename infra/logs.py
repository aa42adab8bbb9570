"""Structured logs: one JSON object per line (or a readable console line), via structlog.

Every line names its component (`component`: bound per component by the runner, `cli` for
the other commands) and carries no credential: whatever the settings hold as a secret is
blanked out of each rendered line, wherever a library or a message may have put it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import structlog

from infra.metrics import LOG_LINES_DROPPED

# A library line repeated within this window is counted, not written (see `RepeatedLines`).
REPEAT_WINDOW_SECONDS = 60.0
# Loggers of client libraries whose repeated lines are thinned out.
LIBRARY_LOGGERS = ("aiokafka", "psycopg", "asyncpg")
# Secrets shorter than this are not blanked out: they would blank common words (a local
# database password like "credits" would blank every logger name). Real ones are longer.
MIN_REDACTED_CHARS = 8
REDACTED = "[redacted]"


def configure_logging(
    level: str, log_format: str, *, secrets: Sequence[str] = (), component: str = "cli"
) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.contextvars.bind_contextvars(component=component)
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
    # Client libraries log every attempt while a server is away (aiokafka each reconnect and
    # retried request, psycopg_pool and asyncpg each connection they fail to replace):
    # hundreds of lines a minute. The components log the outage itself once, as a change of
    # their readiness.
    handler.addFilter(RepeatedLines(LIBRARY_LOGGERS, REPEAT_WINDOW_SECONDS))
    redact = Redact(secrets)
    global _JSON_SINK
    _JSON_SINK = (handler, redact) if log_format == "json" else None
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                cast(structlog.typing.Processor, redact),
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR while a broker is down; health says it once.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


class BatchedLines:
    """Lines of one logger written a batch at a time: the ledger's line per command.

    The ordinary path (structlog's processors, then the standard library's record, handler and
    formatter) costs tens of microseconds a line, a large share of what the ledger spends on a
    command. These lines are the same JSON objects (event, level, timestamp, the context's
    component, the fields), rendered here with one timestamp per batch, blanked of secrets and
    written in one call. With console logs they take the ordinary path.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.logger = logging.getLogger(name)

    def enabled(self) -> bool:
        """Whether `info` writes: callers skip building lines nobody reads."""
        return self.logger.isEnabledFor(logging.INFO)

    def info(self, event: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows or not self.enabled():
            return
        sink = _JSON_SINK
        if sink is None:
            ordinary = structlog.get_logger(self.name)
            for row in rows:
                ordinary.info(event, **row)
            return
        handler, redact = sink
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        head = {**structlog.contextvars.get_contextvars(), "level": "info", "timestamp": stamp}
        text = "".join(
            json.dumps({"event": event, **row, **head}, default=repr) + "\n" for row in rows
        )
        text = redact(None, "", text)
        handler.acquire()
        try:
            handler.stream.write(text)
            handler.flush()
        except (OSError, ValueError):
            # A closed or broken log stream (ValueError: closed file) must not fail the batch
            # these lines describe: it would be read again, fail again, and stop the ledger.
            # The ordinary path's handlers drop a line the same way (logging.Handler.handleError).
            LOG_LINES_DROPPED.inc(len(rows))
        finally:
            handler.release()


# Where BatchedLines write when logs are JSON: the handler `configure_logging` installed.
_JSON_SINK: tuple[logging.StreamHandler[Any], Redact] | None = None


class Redact:
    """Blanks the given secrets out of a rendered line: the last step of every line.

    A substring check per secret on the finished line (well under a microsecond each), so it
    catches a secret wherever it went: a message, a field, an exception's text.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_REDACTED_CHARS}, key=len, reverse=True
        )

    def __call__(self, _: object, __: str, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line


class RepeatedLines(logging.Filter):
    """One line per message and window from chatty libraries, with how many were held back.

    aiokafka logs every reconnect attempt, about ten lines a second per client, for as long as a
    broker is away (3,000 lines in a 30 s outage): the components say once that Kafka is away
    (readiness) and the library's first line of each kind says how. Lines are told apart by
    their message template, not by the values in them.
    """

    MAX_REMEMBERED = 1000

    def __init__(self, prefixes: tuple[str, ...], window_seconds: float) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_seconds = window_seconds
        # (logger, template) -> (when last written, lines held back since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        written_at, held_back = self._seen.get(key, (float("-inf"), 0))
        if now - written_at < self.window_seconds:
            self._seen[key] = (written_at, held_back + 1)
            return False
        if held_back:
            record.msg = f"{record.msg} [{held_back} more like this in the last minute]"
        if len(self._seen) >= self.MAX_REMEMBERED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True
