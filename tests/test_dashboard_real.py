"""The dashboard in a real headless Chromium, fed only by real parts: no synthetic events.

1. A live 3-node swarm started from the CLI (tests/test_swarm.py's Swarm helper): node1 researches and
   serves its dashboard (`join --dashboard 0`), node2 and node3 verify and adopt its discovery. The page
   follows node1 over server-sent events; `swarm-node dashboard --home <node2>` shows the same swarm from
   node2's events.jsonl.
2. A real replay (`swarm-node replay --scenario tests/replay_small.toml`: 6 real nodes with the table
   oracle), played at full speed by `swarm-node dashboard --replay`, and its self-contained snapshot from
   `swarm-node report --html --replay` opened via file://.

Screenshots go to $SWARM_SCREENSHOTS (or the test's tmp_path).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard_checks import (CHROMIUM, VIEWPORT, assert_clean, counter, discovery_rows, discovery_rows_when,
                              leaderboard, open_dashboard,
                              record, screenshot, settle, stats, wait_for_counter, wait_for_replay_end)
from swarm_node.testing import REPO, free_port, peer_of, start_cli, stop_process, wait_for
from test_swarm import Swarm

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not at {CHROMIUM} "
                                "(apt-get install -y chromium)")

SCENARIO = REPO / "tests" / "replay_small.toml"


class Dashboard:
    """`swarm-node dashboard ARGS` in a subprocess; its URL is read from what it prints."""

    def __init__(self, tmp: Path, *args: str):
        self.log_path = tmp / f"dashboard-{time.monotonic_ns()}.log"
        self.proc = start_cli("dashboard", *args, log=self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, timeout: float = 30) -> str:
        return wait_for(lambda: (m := re.search(r"dashboard: (http://\S+?)/?\s", self.log())) and m.group(1), timeout,
                        lambda: "swarm-node dashboard printed no URL:\n" + self.log(), proc=self.proc)

    def stop(self) -> int:
        return stop_process(self.proc, timeout=15)


@pytest.fixture
def dashboards(tmp_path):
    started: list[Dashboard] = []

    def start(*args: str) -> Dashboard:
        d = Dashboard(tmp_path, *args)
        started.append(d)
        return d
    yield start
    for d in started:
        d.stop()


def _read_jsonl(path: Path) -> list[dict]:
    import json
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip() and line.endswith("}")]


# --- 1. a live swarm ------------------------------------------------------------------------------



class LiveSwarm:
    def __init__(self, swarm: Swarm):
        self.swarm = swarm
        self.started = time.monotonic()
        swarm.start("node1", "--max-experiments", "3", "--dashboard", "0")
        self.addr = swarm.bootstrap_addr("node1")
        self.peer1 = peer_of(self.addr)
        self.url = wait_for(lambda: (m := re.search(r"dashboard: (http://\S+)", swarm.log("node1"))) and m.group(1),
                            60, lambda: "node1 printed no dashboard URL:\n" + swarm.log("node1"))
        for name in ("node2", "node3"):
            swarm.start(name, "--bootstrap", self.addr, "--max-experiments", "0")

    def events(self, name: str) -> list[dict]:
        path = self.swarm.tmp / name / "events.jsonl"
        return _read_jsonl(path) if path.is_file() else []

    def home_dashboard(self, dashboards, name: str) -> str:
        """The URL of `swarm-node dashboard --home <name's home>`, started on a free port."""
        return dashboards("--home", str(self.swarm.tmp / name), "--port", str(free_port())).url()

    def wait_for_spread(self, name: str, timeout: float = 120) -> str:
        """The id of node1's first discovery that node2 and node3 both adopted, once `name`'s log holds
        both adoptions and both receipts (a discovery published before they connected reaches them by
        Presence only, and they adopt a later one)."""
        def spread():
            events = self.events(name)
            for found in (e["id"] for e in events if e["type"] == "discovery"):
                adopted = {e["peer"] for e in events if e["type"] == "adoption" and e["id"] == found}
                received = {e["peer"] for e in events if e["type"] == "receipt" and e["id"] == found}
                if len(adopted) >= 2 and len(received) >= 2:
                    return found
            return None
        return wait_for(spread, timeout, lambda: f"{name} saw no spread:\n" + self.swarm.log(name))


@pytest.fixture(scope="class")
def live(tmp_path_factory):
    swarm = Swarm(tmp_path_factory.mktemp("live"))
    try:
        yield LiveSwarm(swarm)
    finally:
        swarm.stop_all()


def _caught_up(page, events: list[dict], timeout: float = 30) -> None:
    page.wait_for_function(f"window.swarmStats.eventsApplied >= {len(events)}", timeout=timeout * 1000)


def _row_of(page, discovery: str) -> dict:
    """The discoveries table's row of `discovery`, once the throttled table shows it."""
    return next(r for r in discovery_rows_when(page, lambda rows: any(r["id"] == discovery for r in rows))
                if r["id"] == discovery)


class TestLiveSwarm:
    def test_node1_dashboard_follows_the_swarm(self, browser, shots, live):
        assert live.url.startswith("http://127.0.0.1:") and not live.url.rstrip("/").endswith(":0"), live.url
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, live.url)
        assert page.locator("#mode").inner_text().lower().startswith("live")
        applied_at_open = stats(page)["eventsApplied"]

        # what a person waits for: three peers, node1's discovery adopted by the two others, a leaderboard
        wait_for_counter(page, "peers", 3, timeout=90)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#discoveries tbody tr[data-discovery]')]"
            ".some(r => Number(r.dataset.adopted) >= 2 && Number(r.dataset.reached) >= 3)", timeout=120_000)
        row = next(r for r in discovery_rows(page) if r["adopted"] >= 2 and r["reached"] >= 3)
        assert row["id"].startswith("cpu:") and row["author"] and row["author"].lstrip("…") in live.peer1, row
        assert wait_for_counter(page, "adoptions", 2, timeout=60) >= 2
        page.wait_for_selector("#leaderboard tbody tr[data-tier]", timeout=30_000)
        board = leaderboard(page)
        assert [e["tier"] for e in board] == ["cpu"], board
        assert board[0]["val"] != "—" and board[0]["test"] != "—", board
        assert stats(page)["eventsApplied"] > applied_at_open, "nothing arrived over server-sent events"
        live.wait_for_spread("node1")
        _caught_up(page, live.events("node1"))
        settle(page)
        screenshot(page, shots, "real-live-node1")
        print(f"\nlive 3-node swarm: discovery {row['id'][:12]} adopted by 2 peers "
              f"{time.monotonic() - live.started:.0f} s after node1 started; page counters " +
              ", ".join(f"{n} {counter(page, n)}" for n in ("peers", "links", "experiments", "keeps", "adoptions")))
        page.close()
        assert_clean(seen)
        assert any("/api/stream" in u for u in seen.requests), seen.requests

    def test_node1_dashboard_shows_three_peers_and_full_spread(self, browser, live):
        discovery = live.wait_for_spread("node1")
        page = browser.new_page(viewport=VIEWPORT)
        try:
            open_dashboard(page, live.url)
            _caught_up(page, live.events("node1"))
            row = _row_of(page, discovery)
            assert counter(page, "peers") == 3 and row["reached"] == row["alive"] == 3, (counter(page, "peers"), row)
        finally:
            page.close()

    def test_dashboard_of_node2_home_shows_the_same_swarm(self, browser, shots, live, dashboards):
        discovery = live.wait_for_spread("node2")
        url = live.home_dashboard(dashboards, "node2")
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, url)
        assert page.locator("#mode").inner_text().lower().startswith("live")
        _caught_up(page, live.events("node2"))
        assert counter(page, "peers") >= 3
        row = _row_of(page, discovery)
        assert row["author"] and row["author"].lstrip("…") in live.peer1, row
        assert row["adopted"] >= 2 and row["reached"] >= 3, row
        assert leaderboard(page)[0]["tier"] == "cpu"
        settle(page)
        screenshot(page, shots, "real-live-node2-home")
        page.close()
        assert_clean(seen)

    def test_dashboard_of_node2_home_shows_three_peers(self, browser, live, dashboards):
        discovery = live.wait_for_spread("node2")
        url = live.home_dashboard(dashboards, "node2")
        page = browser.new_page(viewport=VIEWPORT)
        try:
            open_dashboard(page, url)
            _caught_up(page, live.events("node2"))
            row = _row_of(page, discovery)
            assert counter(page, "peers") == 3 and row["reached"] == row["alive"] == 3, (counter(page, "peers"), row)
        finally:
            page.close()


# --- 2. a real replay -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "small"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swarm_node.cli", "replay", "--scenario", str(SCENARIO),
                           "--seed", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\nreplay of {SCENARIO.name} (6 agents, 4 virtual hours): {time.monotonic() - started:.1f} s wall")
    assert (out / "events.jsonl").is_file()
    return out


def _events(folder: Path) -> list[dict]:
    return _read_jsonl(folder / "events.jsonl")


def _seek_before_first_leave(page, events: list[dict]) -> None:
    first_leave = min(e["t"] for e in events if e["type"] == "leave")
    page.evaluate(f"window.swarmPlayer.play(false); window.swarmPlayer.seek({first_leave - 1})")
    page.wait_for_function("document.querySelector('[data-counter=\"peers\"] b').textContent === '6'",
                           timeout=10_000)


def _assert_shows_night(page, events: list[dict]) -> None:
    """What the page shows just before the first agent leaves (see _seek_before_first_leave)."""
    first_leave = min(e["t"] for e in events if e["type"] == "leave")
    found = [e for e in events if e["type"] == "discovery" and e["t"] < first_leave - 1]
    assert found, "the small replay makes a discovery before its first agent leaves"
    assert counter(page, "peers") == 6
    ids = {e["id"] for e in found}
    rows = discovery_rows_when(page, lambda rows: {r["id"] for r in rows} == ids  # the table redraws on a throttle
                               and all(r["reached"] == 6 for r in rows))
    assert {r["id"] for r in rows} == {e["id"] for e in found}
    for r in rows:
        assert r["alive"] == 6 and r["reached"] == 6, r  # every agent got every discovery
    entries = leaderboard(page)
    assert entries and all(e["val"] != "—" for e in entries), entries
    assert any(e["tier"] == found[0]["tier"] and e["steps"] >= 2 for e in entries), entries


def test_real_replay_plays_to_the_end(browser, shots, replay_dir, dashboards):
    events = _events(replay_dir)
    joins = [e for e in events if e["type"] == "join"]
    found = [e for e in events if e["type"] == "discovery"]
    assert len(joins) == 6 and found, "the small replay has 6 agents and at least one discovery"

    board = dashboards("--replay", str(replay_dir), "--port", str(free_port()))
    page = browser.new_page(viewport=VIEWPORT)
    seen = record(page)
    open_dashboard(page, board.url(), speed="max")
    played = wait_for_replay_end(page, timeout=60)
    seconds = (played["playEnd"] - played["playStart"]) / 1000
    print(f"\nreal 6-agent replay at max speed: {played['playEvents']} events rendered in {seconds:.2f} s = "
          f"{played['eventsPerSecond']} events/s (longest frame gap {played['maxFrameGapDuringPlayMs']:.0f} ms)")
    assert played["eventsApplied"] == len(events)

    # at the end of the night every agent has left; just before the first one leaves: six peers, every
    # discovery with its spread, a leaderboard per tier that kept something
    assert counter(page, "peers") == 0
    assert counter(page, "experiments") == sum(e["type"] == "experiment" for e in events)
    assert counter(page, "discoveries") == len({e["id"] for e in found})  # two agents may find one state
    _seek_before_first_leave(page, events)
    _assert_shows_night(page, events)
    settle(page)
    screenshot(page, shots, "real-replay-night")
    screenshot(page, shots, "real-replay-night-viewport", full_page=False)
    page.close()
    assert_clean(seen)


def test_real_replay_agents_leave_by_peer_id(replay_dir):
    events = _events(replay_dir)
    ids = {e["peer"] for e in events if e["type"] == "join"}
    leaves = [e["peer"] for e in events if e["type"] == "leave"]
    assert leaves and set(leaves) <= ids, leaves


def test_real_replay_snapshot_opens_from_a_file(browser, shots, replay_dir, tmp_path):
    html = tmp_path / "snapshot.html"
    proc = subprocess.run([sys.executable, "-m", "swarm_node.cli", "report", "--html", str(html), "--replay",
                           str(replay_dir)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SWARM_NODE_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert html.is_file()
    events = _events(replay_dir)
    page = browser.new_page(viewport=VIEWPORT)
    seen = record(page)
    open_dashboard(page, html.as_uri())
    assert page.locator("#mode").inner_text().lower() == "snapshot"
    page.wait_for_function(f"window.swarmStats.eventsApplied === {len(events)}", timeout=30_000)
    assert counter(page, "peers") == 0  # the night is over
    _seek_before_first_leave(page, events)
    _assert_shows_night(page, events)
    settle(page)
    screenshot(page, shots, "real-replay-snapshot")
    page.close()
    assert_clean(seen)
    assert all(u.startswith(("file:", "data:")) for u in seen.requests), seen.requests
