"""structlog set-up: readable lines for people, JSON lines (`--log-json`) for machines."""
from __future__ import annotations

import logging
import sys

import structlog


# Set by a live progress line on a terminal, so each log line first erases it.
before_log = None


def _clear_progress(_logger, _name, event_dict):
    if before_log is not None:
        before_log()
    return event_dict


def configure(json_lines: bool = False, level: str = "info") -> None:
    renderer = structlog.processors.JSONRenderer() if json_lines else \
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[_clear_progress, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso" if json_lines else "%H:%M:%S"),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False)
