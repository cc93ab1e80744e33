"""`swarm-node dashboard` and the self-contained HTML export behind `swarm-node report --html`.

    swarm-node dashboard --home DIR      follow a node's home (tails DIR/events.jsonl)
    swarm-node dashboard --replay DIR    play a replay's events.jsonl in the page
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import sys
import webbrowser
from functools import partial
from pathlib import Path

import trio

from .app import SCRIPT_TAG, STATIC, STYLE_TAG, WILDCARD_HOSTS, create_app
from .server import DEFAULT_HOST, DEFAULT_PORT, serve
from .sources import FileSource

EVENTS_FILE = "events.jsonl"


def add_dashboard_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "dashboard", help="serve the swarm dashboard for a node's home or a replay",
        description="Serve the dashboard: the peer graph with discoveries spreading through it, spread "
                    "curves, the leaderboard per tier, the best val_bpb over time and the experiment feed. "
                    f"It works offline and listens on {DEFAULT_HOST} unless --host says otherwise.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--home", metavar="DIR", help="follow the node whose home is DIR (default: "
                        "$SWARM_NODE_HOME or ~/.swarm-node); works while the node runs in another process")
    source.add_argument("--replay", metavar="DIR", help="play the events.jsonl of a replay in DIR "
                        "(or that file itself), with a time scrubber and play speed")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; "
                   "0.0.0.0 exposes the dashboard to your network). Against DNS rebinding the dashboard "
                   "answers only requests addressed to localhost, 127.0.0.1, [::1] or this address; "
                   "with 0.0.0.0 or :: it answers requests addressed to any IP address or to this "
                   "machine's host name (NAME or NAME.local). Others get 400")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (a host name the dashboard is reached "
                        "by, e.g. through a reverse proxy); repeatable; '*' turns the check off")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    p.set_defaults(func=cmd_dashboard)
    return p


def source_for(args) -> FileSource:
    if args.replay:
        path = Path(args.replay).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / EVENTS_FILE
        return FileSource(path, mode="replay", title=f"replay {path.resolve().parent.name}")
    # the home of another process: read it, never create it
    root = Path(args.home or os.environ.get("SWARM_NODE_HOME") or Path.home() / ".swarm-node").expanduser().resolve()
    return FileSource(root / EVENTS_FILE, mode="home", title=f"node {root}")


def cmd_dashboard(args) -> int:
    source = source_for(args)
    if args.replay and not source.path.exists():
        print(f"error: no {EVENTS_FILE} at {source.path}", file=sys.stderr)
        return 2

    try:
        app = create_app(source, allowed_hosts=[args.host, *getattr(args, "allow_host", [])])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed: list[OSError] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                url = await nursery.start(partial(serve, app, host=args.host, port=args.port))
            except OSError as exc:  # the port is taken, or the host is not ours
                failed.append(exc)
                return
            nursery.start_soon(stop_on_signal, nursery.cancel_scope)
            print(f"dashboard: {url}/  ({source.mode}: {source.path}; Ctrl-C to stop)", flush=True)
            if "*" in getattr(args, "allow_host", []):
                print("dashboard: any Host header is answered: DNS-rebinding protection is off", flush=True)
            elif args.host.strip("[]") in WILDCARD_HOSTS:
                print(f"dashboard: reachable from your network by IP address or as {socket.gethostname()}; "
                      f"other host names get 400 (add them with --allow-host)", flush=True)
            if args.open:
                await trio.to_thread.run_sync(webbrowser.open, url + "/")

    trio.run(main)
    if failed:
        print(f"error: cannot listen on {args.host}:{args.port}: {failed[0].strerror or failed[0]}", file=sys.stderr)
        return 2
    return 0


async def stop_on_signal(cancel_scope: trio.CancelScope) -> None:
    """Ctrl-C (or SIGTERM from a container runtime) stops the server cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            cancel_scope.cancel()
            return


# --- static export ------------------------------------------------------------------------

def _inline_json(value) -> str:
    """JSON that cannot end its <script> element early."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline_script(path: Path) -> str:
    code = path.read_text(encoding="utf-8")
    return "<script>\n" + code.replace("</script", "<\\/script") + "\n</script>"


def _inline_style(path: Path) -> str:
    return "<style>\n" + path.read_text(encoding="utf-8").replace("</style", "<\\/style") + "\n</style>"


def export_html(events: list[dict], out: Path, title: str) -> Path:
    """Write one HTML file with the dashboard and `events` in it: it plays like a replay, no server needed."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    # every file the page loads, in its place: index.html's tags are the one list of them
    if html.count('"static/') != len(SCRIPT_TAG.findall(html)) + len(STYLE_TAG.findall(html)):
        raise RuntimeError("index.html loads a static file by a tag the export does not inline")
    html = STYLE_TAG.sub(lambda tag: _inline_style(STATIC / tag[1]), html)
    html = SCRIPT_TAG.sub(lambda tag: _inline_script(STATIC / tag[1]), html)
    data = {"title": title, "exported": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "events": events}
    payload = f'<script id="swarm-data" type="application/json">{_inline_json(data)}</script>\n'
    first_script = html.index("<script>")
    html = html[:first_script] + payload + html[first_script:]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out

