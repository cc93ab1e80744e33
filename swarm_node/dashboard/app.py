"""The dashboard's web app: the page, its static files and the event stream.

    /                   the page (static/index.html)
    /static/...         its scripts (model-*.js, app-*.js, app.js: the <script> tags of index.html,
                        in order), style.css and the vendored libraries
    /api/meta           {"mode", "title", "count", "first", "follow"}: `count` events so far,
                        `first` the index of the oldest one still held (older ones were dropped)
    /api/events?since=N the events from index N on (from `first` when N is older), as a JSON
                        list; the `X-First-Index` header gives the index of its first event
    /api/stream         server-sent events: one message per event, `id:` its index; resumes after
                        `Last-Event-ID` (or from `?since=N`); a comment every `keepalive` seconds
                        keeps proxies from closing an idle stream; `event: reset` when the source
                        started over (the page reloads)

Indices are absolute: an event keeps its index when older events are dropped from memory.

The page does the drawing; the server only hands out events, so one node serves any number of
viewers cheaply.

DNS rebinding: a web page on any site can point its own domain at 127.0.0.1 and then read
whatever answers there as if it were that site. So the app answers only requests whose Host
header names this machine as the browser would for the dashboard itself: localhost, a loopback
address (127.0.0.1, [::1]) or a name in `allowed_hosts`, on any port. Other requests get 400.
`allowed_hosts` usually holds the address the server listens on; a wildcard address (0.0.0.0,
::) stands for "reachable from the network": then any IP address is accepted (a request for an IP
literal cannot come from a rebound domain) plus this machine's host name (name and name.local).
"*" accepts any Host (protection off: for a reverse proxy that checks the Host itself).
"""
from __future__ import annotations

import ipaddress
import json
import re
import socket
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
BATCH = 500  # events per write on the stream
# the page's files: index.html names each once, in the order the page loads them (the export inlines these)
SCRIPT_TAG = re.compile(r'<script src="static/([^"<>]+)"></script>')
STYLE_TAG = re.compile(r'<link rel="stylesheet" href="static/([^"<>]+)">')


def page_scripts() -> list[str]:
    """The page's scripts, paths under static/, in the order index.html loads them: the one list of them."""
    return SCRIPT_TAG.findall((STATIC / "index.html").read_text(encoding="utf-8"))


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


# the host part of a Host header: "name", "name:port", "[v6]" or "[v6]:port"
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^\[\]:@/\\\s]+))(?::[0-9]{0,5})?", re.ASCII)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
REFUSED = (b"Bad Request: unexpected Host header. This dashboard answers only requests for localhost, "
           b"its loopback addresses and the names it was told to allow (protection against DNS rebinding).\n")


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # no zone: browsers drop it from Host
    except ValueError:
        return None


def host_of(header: str | None) -> str | None:
    """The host a Host header names, lowercased, without port, brackets or a final dot; None
    when it is missing or malformed."""
    if not header:
        return None
    match = _HOST.fullmatch(header.strip().lower())
    if not match:
        return None
    if match["v6"] is not None:
        ip = _ip(match["v6"])
        return str(ip) if ip is not None and ip.version == 6 else None
    name = match["name"].rstrip(".")
    return name or None


def machine_names() -> set[str]:
    """This machine's host name as a browser on the network would type it (no DNS lookup)."""
    name = socket.gethostname().lower().rstrip(".")
    if not name:
        return set()
    short = name.split(".", 1)[0]
    return {name, short, short + ".local"}


class AllowedHosts:
    """Which Host headers are answered: localhost, loopback addresses and `allowed_hosts`."""

    def __init__(self, allowed_hosts=()):
        self.any_host = False  # "*": no check
        self.any_ip = False    # a wildcard listen address: any IP literal, and this machine's names
        self.names = {"localhost"}
        self.ips = set()
        for entry in allowed_hosts:  # names or addresses, with or without brackets and port
            if entry is None:
                continue
            entry = str(entry).strip().lower()
            if entry == "*":
                self.any_host = True
                continue
            ip = _ip(entry.removeprefix("[").removesuffix("]"))  # a bare IPv6 address has colons
            host = str(ip) if ip is not None else host_of(entry)
            ip = ip or (_ip(host) if host else None)
            if entry in WILDCARD_HOSTS or (ip is not None and ip.is_unspecified):
                self.any_ip = True
                self.names |= machine_names()
            elif ip is not None:
                self.ips.add(ip)
            elif host:
                self.names.add(host)
            else:
                raise ValueError(f"not a host name or address: {entry!r}")

    def allows(self, header: str | None) -> bool:
        if self.any_host:
            return True
        host = host_of(header)
        if host is None:
            return False
        ip = _ip(host)
        if ip is not None:
            return ip.is_loopback or self.any_ip or ip in self.ips
        return host in self.names


class HostCheck:
    """ASGI middleware: answers 400 (plain text) to requests whose Host header is not allowed."""

    def __init__(self, app, allowed: AllowedHosts):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed.any_host:
            await self.app(scope, receive, send)
            return
        hosts = [value for name, value in scope.get("headers", ()) if name.lower() == b"host"]
        if len(hosts) == 1 and self.allowed.allows(hosts[0].decode("latin-1")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(REFUSED)).encode()),
                                (b"cache-control", b"no-store"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": REFUSED})


def create_app(source, *, keepalive: float = 15.0, allowed_hosts=()) -> Starlette:
    """A Starlette app showing `source` (a LiveSource or FileSource).

    It answers only requests for localhost or a loopback address, and for the hosts in
    `allowed_hosts` (pass the address the server listens on; see the module's docstring).
    Raises ValueError for an entry that is neither a host name nor an address."""
    allowed = AllowedHosts(allowed_hosts or ())

    async def index(request: Request) -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def meta(request: Request) -> JSONResponse:
        first, _ = source.read(0, 0)
        return JSONResponse({"mode": source.mode, "title": source.title, "count": source.count(),
                             "first": first, "follow": bool(getattr(source, "follow", False))})

    async def events(request: Request) -> JSONResponse:
        try:
            since = max(int(request.query_params.get("since", 0)), 0)
        except ValueError:
            return JSONResponse({"error": "since must be an integer"}, status_code=400)
        first, found = source.read(since)
        return JSONResponse(found, headers={"Cache-Control": "no-store", "X-First-Index": str(first)})

    async def stream(request: Request) -> EventStreamResponse:
        start = _first_index(request)

        async def messages():
            sent = start
            generation = getattr(source, "generation", 0)
            yield "retry: 2000\n\n"
            if sent > source.count():  # the viewer saw events this source never had: it started over
                yield "event: reset\ndata: {}\n\n"
                return
            while True:
                first, batch = source.read(sent, BATCH)
                if getattr(source, "generation", 0) != generation:
                    yield "event: reset\ndata: {}\n\n"
                    return
                if batch:  # from `first`: later than `sent` when older events were dropped meanwhile
                    yield "".join(_message(first + i, event) for i, event in enumerate(batch))
                    sent = first + len(batch)
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
    ], middleware=[Middleware(HostCheck, allowed=allowed)])
