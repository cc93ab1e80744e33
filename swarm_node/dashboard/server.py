"""Serve the dashboard with Hypercorn's trio worker inside the caller's nursery.

    url = await nursery.start(serve, create_app(source))              # http://127.0.0.1:8765
    url = await nursery.start(partial(serve, app, port=0))            # any free port

Cancelling the nursery stops the server and closes open event streams.
"""
from __future__ import annotations

import logging
import sys
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"  # this machine only: other addresses expose the dashboard to the network


async def serve(app, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled; reports the URL it listens on (the real port when port=0)."""
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    errorlog = logging.getLogger("swarm_node.dashboard.http")
    if errorlog.level == logging.NOTSET:
        errorlog.setLevel(logging.WARNING)  # the caller prints the URL; keep Hypercorn's errors only
    config.errorlog = errorlog
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    started = False
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(hypercorn_serve, app, config))
            started = True
            task_status.started(binds[0])
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if not started and len(leaves) == 1 and isinstance(leaves[0], OSError):
            raise leaves[0] from None  # "address already in use" reads better bare
        raise


def _leaves(group):
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
