"""Helpers for dashboard tests in a real headless Chromium (Playwright's sync API).

    with serve_in_thread(create_app(source)) as url:
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, url)
        wait_for_counter(page, "peers", 3)
        ...
        assert_clean(seen)

Assertions read what a person sees: counters, table rows and their `data-*` attributes.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlparse

import trio

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1600, "height": 1000}
LOCAL_HOSTS = ("127.0.0.1",)


# --- serving ---------------------------------------------------------------------------------

@contextmanager
def serve_in_thread(app, *, tasks=(), host: str = "127.0.0.1"):
    """Serve `app` on a free port from a thread with its own trio loop; yields the URL.

    `tasks` are async functions run in the same nursery (for example one that emits events into
    a LiveSource's EventLog while the page watches)."""
    from functools import partial

    from swarm_node.dashboard.server import serve

    urls: queue.Queue = queue.Queue()
    handle: dict = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            handle["token"] = trio.lowlevel.current_trio_token()
            handle["scope"] = nursery.cancel_scope
            try:
                url = await nursery.start(partial(serve, app, host=host, port=0))
            except BaseException as exc:
                urls.put(exc)
                raise
            for task in tasks:
                nursery.start_soon(task)
            urls.put(url)

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test through the queue
            urls.put(exc)

    thread = threading.Thread(target=run, name="dashboard-server", daemon=True)
    thread.start()
    url = urls.get(timeout=30)
    if isinstance(url, BaseException):
        raise url
    try:
        yield url
    finally:
        handle["token"].run_sync_soon(handle["scope"].cancel)
        thread.join(timeout=15)
        assert not thread.is_alive(), "the dashboard server did not stop when cancelled"


# --- what the page did -------------------------------------------------------------------------

class Seen:
    def __init__(self):
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []


def record(page) -> Seen:
    """Record console errors, uncaught exceptions and every request the page makes."""
    seen = Seen()
    page.on("console", lambda msg: seen.console_errors.append(f"{msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.page_errors.append(str(exc)))
    page.on("request", lambda request: seen.requests.append(request.url))
    return seen


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about", "file"):
        return True
    return parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname in LOCAL_HOSTS


def assert_clean(seen: Seen) -> None:
    assert not seen.page_errors, f"uncaught errors in the page: {seen.page_errors}"
    assert not seen.console_errors, f"console errors: {seen.console_errors}"
    outside = [u for u in seen.requests if not is_local(u)]
    assert not outside, f"requests left 127.0.0.1: {outside}"
    assert seen.requests, "no requests were recorded"


# --- the page ------------------------------------------------------------------------------------

def open_dashboard(page, url: str, timeout: float = 20, **query) -> None:
    """Open the dashboard at `url` (http://… or file://…) and wait until it has loaded its events.

    query: speed=max|N (replay), at=end|SECONDS, play=0."""
    target = url.rstrip("/") + "/" if url.startswith("http") else url
    if query:
        target += ("&" if "?" in target else "?") + urlencode(query)
    page.goto(target)
    page.wait_for_function("window.swarmStats && window.swarmStats.ready", timeout=timeout * 1000)


def stats(page) -> dict:
    return page.evaluate("({...window.swarmStats})")


def counter(page, name: str) -> int:
    return int(page.locator(f'[data-counter="{name}"] b').inner_text())


def wait_for_counter(page, name: str, at_least: int, timeout: float = 20) -> int:
    page.wait_for_function(
        "([name, n]) => { const el = document.querySelector(`[data-counter=\"${name}\"] b`);"
        " return el && Number(el.textContent) >= n; }", arg=[name, at_least], timeout=timeout * 1000)
    return counter(page, name)


def discovery_rows(page) -> list[dict]:
    """The discoveries table as shown: id, author, reached and alive peer counts, adoptions."""
    return page.eval_on_selector_all("#discoveries tbody tr[data-discovery]", """rows => rows.map(r => ({
        id: r.dataset.discovery, short: r.querySelector('code').textContent,
        author: r.querySelector('.peer') ? r.querySelector('.peer').textContent : null,
        reached: Number(r.dataset.reached), alive: Number(r.dataset.alive), adopted: Number(r.dataset.adopted),
        text: r.innerText }))""")


def discovery_rows_when(page, check, timeout: float = 15) -> list[dict]:
    """The discoveries table once `check(rows)` holds (the page redraws its tables on a throttle,
    so a read right after a seek or a catch-up may show the previous frame); the last rows read
    when it never does, for the caller's assertion to report."""
    deadline = time.monotonic() + timeout
    while True:
        rows = discovery_rows(page)
        if check(rows) or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(200)


def wait_for_discovery_everywhere(page, peers: int, timeout: float = 30) -> dict:
    """Wait until a discovery row shows it reached every one of `peers` peers; returns that row."""
    page.wait_for_function(
        "n => [...document.querySelectorAll('#discoveries tbody tr[data-discovery]')]"
        ".some(r => Number(r.dataset.alive) >= n && Number(r.dataset.reached) === Number(r.dataset.alive))",
        arg=peers, timeout=timeout * 1000)
    rows = [r for r in discovery_rows(page) if r["alive"] >= peers and r["reached"] == r["alive"]]
    return rows[0]


def leaderboard(page) -> list[dict]:
    return page.eval_on_selector_all("#leaderboard tbody tr[data-tier]", """rows => rows.map(r => ({
        tier: r.dataset.tier, val: r.children[1].textContent.trim(), test: r.children[2].textContent.trim(),
        author: r.children[3].textContent.trim(), steps: r.querySelectorAll('.step').length }))""")


def wait_for_replay_end(page, timeout: float = 60) -> dict:
    """Wait until a replay played all its events; returns window.swarmStats."""
    page.wait_for_function("window.swarmStats.eventsLoaded > 0 && window.swarmStats.eventsApplied >="
                           " window.swarmStats.eventsLoaded && window.swarmStats.eventsPerSecond !== null",
                           timeout=timeout * 1000)
    return stats(page)


def pin_discovery(page, discovery_id: str) -> None:
    """Click a discovery's row, as a person following it in the graph would."""
    page.click(f'#discoveries tr[data-discovery="{discovery_id}"]')
    page.wait_for_selector(f'#discoveries tr.pinned[data-discovery="{discovery_id}"]')


def settle(page, ms: int = 700) -> None:
    """Let throttled tables and charts catch up before a screenshot."""
    page.wait_for_timeout(ms)


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SWARM_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, folder: Path, name: str, full_page: bool = True) -> Path:
    path = Path(folder) / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def assert_shows_swarm(page, peers: int, timeout: float = 30) -> dict:
    """What a person checks at a glance: the peer count, a discovery that reached every peer, a
    leaderboard entry with its val_bpb and test_bpb. Returns what it saw."""
    wait_for_counter(page, "peers", peers, timeout)
    assert counter(page, "peers") == peers, f"the page shows {counter(page, 'peers')} peers, not {peers}"
    row = wait_for_discovery_everywhere(page, peers, timeout)
    page.wait_for_selector("#leaderboard tbody tr[data-tier]", timeout=timeout * 1000)
    board = leaderboard(page)
    assert all(entry["val"] != "—" for entry in board), board
    assert any(entry["test"] != "—" for entry in board), board
    return {"discovery": row, "leaderboard": board, "counters": {
        name: counter(page, name) for name in ("peers", "links", "experiments", "keeps", "discoveries",
                                               "adoptions", "rejected")}}


def line(event: dict) -> str:
    """An event as one line of events.jsonl."""
    return json.dumps(event) + "\n"


def join(peer: str, t: float = 0.0) -> dict:
    return {"type": "join", "t": t, "wall": 1.0 + t, "peer": peer, "tier": "cpu", "role": "init-norm"}
