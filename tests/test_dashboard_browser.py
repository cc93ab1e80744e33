"""The dashboard in a real headless Chromium: a live swarm, a 35-agent replay, a static export.

Debian's chromium driven by Playwright's sync API (no browser download). Every test records console
errors and every request, and checks that nothing left 127.0.0.1. Screenshots go to
$SWARM_SCREENSHOTS (or the test's tmp_path).
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from dashboard_checks import (CHROMIUM, VIEWPORT, assert_clean, assert_shows_swarm, counter, discovery_rows,
                              open_dashboard, pin_discovery, record, screenshot, serve_in_thread, settle, stats,
                              wait_for_replay_end)
from swarm_events import generate, write_jsonl
from swarm_node.dashboard.app import create_app
from swarm_node.dashboard.command import export_html
from swarm_node.dashboard.sources import FileSource, LiveSource
from swarm_node.events import EventLog

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not at {CHROMIUM} "
                                "(apt-get install -y chromium)")


def test_live_swarm_updates_over_server_sent_events(browser, shots):
    """A node's own event log, served live: the page starts empty and everything arrives over SSE."""
    events = generate(peers=3, hours=0.5, seed=3, hop_delay=(0.03, 0.13))
    assert any(e["type"] == "adoption" for e in events)
    log = EventLog()
    page_ready = threading.Event()

    async def run_swarm():  # the events of a 3-node swarm, 30 virtual minutes in about 3 s
        while not page_ready.is_set():
            await trio.sleep(0.05)
        last = 0.0
        for event in events:
            await trio.sleep(max(0.0, (event["t"] - last) / 600))
            last = event["t"]
            log.emit(event["type"], **{k: v for k, v in event.items() if k not in ("type", "t", "wall")})

    with serve_in_thread(create_app(LiveSource(log, title="3-node swarm")), tasks=[run_swarm]) as url:
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, url)
        assert stats(page)["eventsLoaded"] == 0
        assert page.locator("#mode").inner_text().lower().startswith("live")
        page_ready.set()
        shown = assert_shows_swarm(page, peers=3)
        page.wait_for_function(f"window.swarmStats.eventsApplied === {len(events)}", timeout=20_000)
        settle(page)
        screenshot(page, shots, "live-3-nodes")
        assert counter(page, "experiments") == sum(e["type"] == "experiment" for e in events)
        assert counter(page, "adoptions") == sum(e["type"] == "adoption" for e in events)
        assert shown["leaderboard"][0]["tier"] == "cpu"
        page.close()
    assert_clean(seen)
    assert any("/api/stream" in url for url in seen.requests)


def test_replay_of_35_agents_plays_at_full_speed(browser, shots, tmp_path):
    events = generate(peers=35, hours=8, seed=7)
    held_back = 300  # appended once the page runs: they must arrive over SSE
    path = write_jsonl(events[:-held_back], tmp_path / "replay" / "events.jsonl")
    source = FileSource(path, mode="replay", title="35 agents, 8 h")
    with serve_in_thread(create_app(source)) as url:
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, url, speed="max")
        played = wait_for_replay_end(page, timeout=120)
        seconds = (played["playEnd"] - played["playStart"]) / 1000
        print(f"\n35-agent replay at max speed: {played['playEvents']} events rendered in {seconds:.2f} s = "
              f"{played['eventsPerSecond']} events/s; longest frame gap {played['maxFrameGapDuringPlayMs']:.0f} ms "
              f"({played['frames']} frames, apply {played['applyMs']:.0f} ms, render {played['renderMs']:.0f} ms)")
        assert played["eventsApplied"] == len(events) - held_back
        assert played["maxFrameGapDuringPlayMs"] < 1000, "the page froze while playing"

        with open(path, "a") as f:  # the replay goes on: the page follows over server-sent events
            f.write("".join(line + "\n" for line in map(_json, events[-held_back:])))
        page.wait_for_function(f"window.swarmStats.eventsApplied === {len(events)}", timeout=20_000)

        shown = assert_shows_swarm(page, peers=35)
        assert {e["tier"] for e in shown["leaderboard"]} == {"gpu-large", "gpu-consumer", "cpu"}
        assert max(e["steps"] for e in shown["leaderboard"]) >= 3
        assert counter(page, "rejected") == sum(e["type"] == "reject" for e in events)
        settle(page)
        screenshot(page, shots, "replay-35-end")

        # follow one discovery: the graph shows who has it and the links it came over
        row = discovery_rows(page)[2]
        pin_discovery(page, row["id"])
        settle(page)
        assert page.locator("#focus").inner_text().count(row["short"]) == 1
        screenshot(page, shots, "replay-35-pinned", full_page=False)

        # read the diff behind a step of the lineage
        page.locator("#leaderboard .step.has-diff").first.click()
        page.wait_for_selector("#diff-dialog[open]")
        assert "+++ b/train.py" in page.locator("#diff-body").inner_text()
        screenshot(page, shots, "replay-35-diff", full_page=False)
        page.click("#diff-close")
        page.click("#focus [data-unpin]")  # follow the newest discovery again

        # sustained play: 1000 virtual seconds per real second, from the first discovery on
        first = next(e for e in events if e["type"] == "discovery")
        page.evaluate(f"window.swarmPlayer.seek({first['t'] - 1}); window.swarmPlayer.setSpeed(1000);"
                      "window.swarmPlayer.play(true)")
        page.wait_for_timeout(200)
        before = stats(page)
        page.wait_for_timeout(2000)
        after = stats(page)
        fps = (after["frames"] - before["frames"]) / 2
        print(f"35-agent replay at 1000x: {fps:.0f} frames/s, "
              f"{(after['eventsApplied'] - before['eventsApplied']) / 2:.0f} events/s")
        assert fps >= 5

        # the wave, mid-spread: the newest discovery at 1x
        page.evaluate("window.swarmPlayer.play(false)")
        late = [e for e in events if e["type"] == "discovery"][-3]
        page.evaluate(f"window.swarmPlayer.seek({late['t'] - 0.2}); window.swarmPlayer.setSpeed(1);"
                      "window.swarmPlayer.play(true)")
        page.wait_for_timeout(1800)
        screenshot(page, shots, "replay-35-wave", full_page=False)
        page.close()
    assert_clean(seen)


def test_static_export_works_without_a_server(browser, shots, tmp_path):
    events = generate(peers=35, hours=2, seed=11)
    out = export_html(events, tmp_path / "swarm.html", "night run")
    page = browser.new_page(viewport=VIEWPORT)
    seen = record(page)
    open_dashboard(page, out.as_uri())
    assert page.locator("#mode").inner_text().lower() == "snapshot"
    assert_shows_swarm(page, peers=35)
    assert stats(page)["eventsApplied"] == len(events)
    settle(page)
    screenshot(page, shots, "export-snapshot")
    page.close()
    assert_clean(seen)
    assert all(u.startswith(("file:", "data:")) for u in seen.requests), seen.requests


def test_discoveries_show_only_measured_credit(browser, shots, tmp_path):
    """Each discovery's credit: a technique named with its effect only where an `effect` event
    measured it (a single change's own decision, or an ablation); the other name of a combined
    change reads "combined, not ablated", a single change without a measurement "not measured"."""
    from swarm_node.credit import changes_from_diff, technique

    events = generate(peers=6, hours=1, seed=5)
    discoveries = {e["id"]: e for e in events if e["type"] == "discovery"}
    effects = {(e["tier"], e["state"]): e for e in events if e["type"] == "effect"}  # one per state here
    label = {d: {n: technique(n, v) for n, v in changes_from_diff(e["diff"]).items()} for d, e in discoveries.items()}
    single = next(d for d, e in discoveries.items() if len(label[d]) == 1 and (e["tier"], e["state"]) in effects)
    combined = next(d for d, e in discoveries.items() if len(label[d]) == 2 and (e["tier"], e["state"]) in effects)
    unmeasured = next(d for d, e in discoveries.items() if len(label[d]) == 1 and (e["tier"], e["state"]) not in effects)
    s, c = (effects[discoveries[d]["tier"], discoveries[d]["state"]] for d in (single, combined))
    assert s["kind"] == "single" and c["kind"] == "ablation" and abs(c["effect"]) > 2 * c["se"]
    measured_name, other = c["name"], next(n for n in label[combined] if n != c["name"])

    out = export_html(events, tmp_path / "credit.html", "credit")
    page = browser.new_page(viewport=VIEWPORT)
    seen = record(page)
    open_dashboard(page, out.as_uri())
    page.wait_for_function(f"window.swarmStats.eventsApplied === {len(events)}", timeout=30_000)

    def credit(d):  # the credit cell of a discovery's row, line by line, with each line's status
        return page.eval_on_selector_all(f'#discoveries tr[data-credit-of="{d}"] .credit-line',
                                         "ls => ls.map(l => [l.dataset.credit, l.textContent])")

    page.wait_for_function("n => document.querySelectorAll('#discoveries td.credit').length === n",
                           arg=len(discoveries), timeout=15_000)
    assert credit(single) == [["found", f"{label[single][s['name']]} {s['effect']:+.4f} bpb (single, SE {s['se']:.4f})"]]
    assert credit(combined) == [
        ["found", f"{label[combined][measured_name]} {c['effect']:+.4f} bpb (ablation, SE {c['se']:.4f})"],
        ["combined", f"{label[combined][other]}: combined, not ablated"]]
    assert credit(unmeasured) == [["not measured", f"{next(iter(label[unmeasured].values()))}: not measured"]]
    for d, e in discoveries.items():  # a diff alone names no technique as found
        if (e["tier"], e["state"]) not in effects:
            assert all(status != "found" for status, _ in credit(d)), (d, credit(d))

    pin_discovery(page, combined)  # the focus panel words it the same way
    page.wait_for_function("t => document.querySelector('#focus').innerText.includes(t)",
                           arg=f"{label[combined][other]}: combined, not ablated", timeout=10_000)
    assert f"{c['effect']:+.4f} bpb (ablation" in page.locator("#focus").inner_text()
    settle(page)
    screenshot(page, shots, "credit")
    page.close()
    assert_clean(seen)


def _window_spread(wall: bool = True) -> list[dict]:
    """A discovery spread the way a replay's virtual clock records it: born at t=10, every receipt
    at the window's end (t=300), the real gossip 12-48 ms apart in `wall`. Peer e's receipt inferred
    from its register (via="presence") comes first, 5 ms in: it is no delivery."""
    w0 = 1_796_308_683.213
    events = [{"type": "join", "t": 0, "wall": w0 - 10, "peer": p, "tier": "cpu"} for p in "abcde"]
    events.append({"type": "discovery", "t": 10, "wall": w0, "id": "cpu:" + "1" * 64, "peer": "a", "tier": "cpu",
                   "state": "1" * 64, "parent": "0" * 64, "val_bpb": 1.9, "test_bpb": 1.92, "description": "x",
                   "diff": "+NORM = 'rmsnorm'\n"})
    events.append({"type": "receipt", "t": 300, "wall": w0 + 0.005, "id": "cpu:" + "1" * 64, "peer": "e",
                   "via": "presence"})
    for peer, source, ms in (("b", "a", 12), ("c", "a", 20), ("d", "b", 35), ("e", "c", 48)):
        events.append({"type": "receipt", "t": 300, "wall": round(w0 + ms / 1000, 3), "id": "cpu:" + "1" * 64,
                       "peer": peer, "from": source})
    return events if wall else [{k: v for k, v in e.items() if k != "wall"} for e in events]


def test_spread_shows_real_gossip_delivery_behind_the_virtual_windows(browser, shots, tmp_path):
    """A replay's receipts all land at its virtual clock's window end (one step, 4m 50s after birth);
    the page also shows the real delivery from `wall`: 50 % of 5 peers in 20 ms, 100 % in 48 ms. A
    snapshot of unknown origin shows it too when its receipts share one time; without `wall`, none."""
    real = ("real gossip delivery (wall clock of the machine that ran the agents): "
            "50 % in 20 ms · 100 % in 48 ms · 4 gossip receipts")
    path = write_jsonl(_window_spread(), tmp_path / "replay" / "events.jsonl")
    with serve_in_thread(create_app(FileSource(path, mode="replay", title="replay windows"))) as url:
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, url, at="end")
        page.wait_for_function("t => document.querySelector('#focus').innerText.includes(t)", arg=real, timeout=15_000)
        focus = " ".join(page.locator("#focus").inner_text().split())
        assert "virtual time: 50 % in 4m 50s · 100 % in 4m 50s" in focus, focus
        assert real in page.locator("#spread-real").inner_text()
        assert "virtual time" in page.locator("#spread-what").inner_text()
        row = page.locator("#discoveries tr[data-discovery] td.num").all_inner_texts()
        assert [" ".join(c.split()) for c in row[1:3]] == ["4m 50s 20 ms real", "4m 50s 48 ms real"], row
        assert page.locator("#discoveries thead").inner_text().count("virtual · real") == 2
        settle(page)
        screenshot(page, shots, "spread-real-delivery")
        page.close()
    assert_clean(seen)

    for title, events, shown in (("night run", _window_spread(), True),       # one step: real times shown
                                 ("replay old", _window_spread(wall=False), False)):  # no `wall`: none
        out = export_html(events, tmp_path / f"{title}.html", title)
        page = browser.new_page(viewport=VIEWPORT)
        seen = record(page)
        open_dashboard(page, out.as_uri())
        page.wait_for_function("document.querySelector('#focus').innerText.includes('4m 50s')", timeout=15_000)
        settle(page)
        assert (real in page.locator("#focus").inner_text()) is shown
        assert ("ms real" in page.locator("#discoveries").inner_text()) is shown
        page.close()
        assert_clean(seen)


def _json(event: dict) -> str:
    import json
    return json.dumps(event, separators=(",", ":"))
