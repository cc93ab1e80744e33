"""How a command's trio run ends: Ctrl-C and SIGTERM, and errors wrapped in trio's exception groups."""
from __future__ import annotations

import signal
import sys

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def run_until_interrupted(main) -> bool:
    """trio.run(main); True if Ctrl-C ended it."""
    try:
        trio.run(main)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        return True
    return False


def find(exc: BaseException, kind: type) -> BaseException | None:
    """`exc` itself or the first `kind` inside trio's exception groups; None if there is none."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for e in exc.exceptions if (found := find(e, kind)) is not None), None)
    return None


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, possibly wrapped in trio's exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(interrupted(e) for e in exc.exceptions)
    return False


async def stop_on_sigterm(scope) -> None:
    """Cancel `scope` when the process gets SIGTERM."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
