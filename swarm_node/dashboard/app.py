"""The dashboard's web app: the page, its static files and the event stream.

    /                   the page (static/index.html)
    /static/...         app.js, model.js, style.css and the vendored libraries
    /api/meta           {"mode", "title", "count", "follow"}
    /api/events?since=N the events from index N on, as a JSON list
    /api/stream         server-sent events: one message per event, `id:` its index; resumes after
                        `Last-Event-ID` (or from `?since=N`); a comment every `keepalive` seconds
                        keeps proxies from closing an idle stream; `event: reset` when the source
                        started over (the page reloads)

The page does the drawing; the server only hands out events, so one node serves any number of
viewers cheaply.
"""
from __future__ import annotations

import json
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
BATCH = 500  # events per write on the stream


class EventStreamResponse(StreamingResponse):
    """A streaming response that ends quietly when the viewer has gone away."""

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return


def _message(index: int, event: dict) -> str:
    return f"id: {index}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def _first_index(request: Request) -> int:
    """Where a stream starts: after Last-Event-ID when the browser reconnects, else ?since=."""
    last = request.headers.get("last-event-id")
    try:
        if last not in (None, ""):
            return int(last) + 1
        return max(int(request.query_params.get("since", 0)), 0)
    except ValueError:
        return 0


def create_app(source, *, keepalive: float = 15.0) -> Starlette:
    """A Starlette app showing `source` (a LiveSource or FileSource)."""

    async def index(request: Request) -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def meta(request: Request) -> JSONResponse:
        return JSONResponse({"mode": source.mode, "title": source.title, "count": len(source.snapshot(0)),
                             "follow": bool(getattr(source, "follow", False))})

    async def events(request: Request) -> JSONResponse:
        try:
            since = max(int(request.query_params.get("since", 0)), 0)
        except ValueError:
            return JSONResponse({"error": "since must be an integer"}, status_code=400)
        return JSONResponse(source.snapshot(since), headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> EventStreamResponse:
        start = _first_index(request)

        async def messages():
            sent = start
            generation = getattr(source, "generation", 0)
            yield "retry: 2000\n\n"
            while True:
                batch = source.snapshot(sent)[:BATCH]
                if getattr(source, "generation", 0) != generation:
                    yield "event: reset\ndata: {}\n\n"
                    return
                if batch:
                    yield "".join(_message(sent + i, event) for i, event in enumerate(batch))
                    sent += len(batch)
                    continue
                with trio.move_on_after(keepalive) as waited:
                    await source.wait_beyond(sent)
                if waited.cancelled_caught:
                    yield ": keep-alive\n\n"

        return EventStreamResponse(messages(), headers={"Cache-Control": "no-store",
                                                        "X-Accel-Buffering": "no"})

    return Starlette(routes=[
        Route("/", index),
        Route("/index.html", index),
        Route("/api/meta", meta),
        Route("/api/events", events),
        Route("/api/stream", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
