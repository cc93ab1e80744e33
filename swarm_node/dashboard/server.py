"""Serve the dashboard with Hypercorn's trio worker inside the caller's nursery.

    url = await nursery.start(serve, create_app(source))              # http://127.0.0.1:8765
    url = await nursery.start(partial(serve, app, port=0))            # any free port

Cancelling the nursery stops the server and closes open event streams.
"""
from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def serve(app, *, host: str = "127.0.0.1", port: int = 8765,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled; reports the URL it listens on (the real port when port=0)."""
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    config.errorlog = logging.getLogger("swarm_node.dashboard")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, app, config))
        task_status.started(binds[0])
