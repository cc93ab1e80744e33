"""The dashboard's server side: event sources, the JSON API, server-sent events."""
from __future__ import annotations

import json
import time
from functools import partial

import httpx
import pytest
import trio

from swarm_node.dashboard.app import STATIC, create_app, page_scripts
from swarm_node.dashboard.server import serve
from swarm_node.dashboard.sources import FileSource, LiveSource
from swarm_node.events import EventLog

from dashboard_checks import join, line

MODEL_FILES = [name for name in page_scripts() if name.startswith("model-")]


# --- sources ---------------------------------------------------------------------------------

def test_file_source_tails_whole_lines_and_waits_for_the_file(tmp_path):
    path = tmp_path / "events.jsonl"
    source = FileSource(path, mode="replay")
    assert source.snapshot(0) == []  # not there yet
    path.write_text(line(join("a")) + line(join("b"))[:20])  # the writer is mid-line
    assert [e["peer"] for e in source.snapshot(0)] == ["a"]
    with open(path, "a") as f:
        f.write(line(join("b"))[20:] + "not json\n" + line(join("c")))
    assert [e["peer"] for e in source.snapshot(0)] == ["a", "b", "c"]
    assert [e["peer"] for e in source.snapshot(2)] == ["c"]
    assert source.mode == "replay" and source.title == tmp_path.name


def test_file_source_starts_over_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(line(join("a")) + line(join("b")))
    source = FileSource(path)
    assert len(source.snapshot(0)) == 2
    path.write_text(line(join("z")))
    assert [e["peer"] for e in source.snapshot(0)] == ["z"]
    assert source.generation == 1


def test_file_source_wakes_a_waiter_when_lines_arrive(tmp_path):
    path = tmp_path / "events.jsonl"
    source = FileSource(path, poll=0.02)

    async def main():
        async def append():
            await trio.sleep(0.1)
            path.write_text(line(join("a")))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            with trio.fail_after(3):
                await source.wait_beyond(0)
        assert len(source.snapshot(0)) == 1

    trio.run(main)


def test_live_source_reads_the_event_log():
    log = EventLog()
    source = LiveSource(log, title="node x")
    log.emit("join", peer="a", tier="cpu", role="r")

    async def main():
        async def emit():
            await trio.sleep(0.05)
            log.emit("leave", peer="a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(emit)
            with trio.fail_after(3):
                await source.wait_beyond(1)
    trio.run(main)
    assert [e["type"] for e in source.snapshot(0)] == ["join", "leave"]
    assert source.mode == "live" and source.title == "node x"


# --- the app over a real Hypercorn server ----------------------------------------------------

def run_with_server(source, scenario, keepalive: float = 15.0):
    """Serve create_app(source) on a free port inside trio and run scenario(client, url, nursery)."""
    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(source, keepalive=keepalive), port=0))
            assert url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                with trio.fail_after(10):
                    await scenario(client, url, nursery)
            nursery.cancel_scope.cancel()
    trio.run(main)


_readers: dict = {}


async def read_messages(response, count: int) -> list[dict]:
    """Parse the next `count` server-sent messages (comments come back as {"comment": ...})."""
    lines = _readers.setdefault(id(response), (response, response.aiter_lines()))[1]
    out, message = [], {}
    async for raw in lines:
        if raw == "":
            if message:
                out.append(message)
                message = {}
                if len(out) >= count:
                    return out
            continue
        if raw.startswith(":"):
            out.append({"comment": raw[1:].strip()})
            if len(out) >= count:
                return out
            continue
        field, _, value = raw.partition(":")
        message[field] = value.lstrip(" ")
    return out


def test_page_static_files_and_json_api(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line(join(p, i)) for i, p in enumerate("abc")))
    source = FileSource(path, mode="replay", title="night run")

    async def scenario(client, url, nursery):
        page = await client.get("/")
        assert page.status_code == 200
        assert '<link rel="icon" href="data:,">' in page.text
        scripts = page_scripts()
        # the page loads every script of static/, each once, the libraries and the model before the app
        assert sorted(scripts) == sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js"))
        assert scripts[:2] == ["vendor/uplot/uPlot.iife.min.js", "vendor/cytoscape/cytoscape.min.js"]
        assert scripts[-1] == "app.js" and len(MODEL_FILES) > 1
        assert max(scripts.index(f) for f in scripts if f.startswith("model-")) < scripts.index("app-base.js")
        for asset in ["static/" + name for name in scripts] + ["static/style.css", "static/vendor/uplot/uPlot.min.css"]:
            assert f'"{asset}"' in page.text
            assert (await client.get("/" + asset)).status_code == 200, asset
        assert (await client.get("/static/nope.js")).status_code == 404
        assert (await client.get("/api/meta")).json() == {"mode": "replay", "title": "night run", "count": 3,
                                                          "first": 0, "follow": False}
        assert [e["peer"] for e in (await client.get("/api/events")).json()] == ["a", "b", "c"]
        assert [e["peer"] for e in (await client.get("/api/events?since=2")).json()] == ["c"]
        assert (await client.get("/api/events?since=x")).status_code == 400

    run_with_server(source, scenario)


def test_stream_sends_each_event_with_its_index_and_resumes(tmp_path):
    log = EventLog()
    for p in "abc":
        log.emit("join", peer=p, tier="cpu", role="r")
    source = LiveSource(log)

    async def scenario(client, url, nursery):
        async with client.stream("GET", "/api/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            messages = await read_messages(response, 4)
        assert messages[0] == {"retry": "2000"}
        assert [m["id"] for m in messages[1:]] == ["0", "1", "2"]
        assert [json.loads(m["data"])["peer"] for m in messages[1:]] == ["a", "b", "c"]

        async with client.stream("GET", "/api/stream?since=2") as response:
            messages = await read_messages(response, 2)
        assert messages[1]["id"] == "2"

        # a browser reconnecting sends the last id it saw; Last-Event-ID wins over ?since=
        async with client.stream("GET", "/api/stream?since=0", headers={"Last-Event-ID": "1"}) as response:
            first = (await read_messages(response, 2))[1]
            assert first["id"] == "2"
            log.emit("leave", peer="a")  # from trio's thread: the open stream wakes up
            nxt = (await read_messages(response, 1))[0]
        assert nxt["id"] == "3" and json.loads(nxt["data"])["type"] == "leave"

    run_with_server(source, scenario)


def test_stream_keeps_alive_and_survives_viewers_leaving(tmp_path):
    log = EventLog()
    source = LiveSource(log)

    async def scenario(client, url, nursery):
        async with client.stream("GET", "/api/stream") as response:
            messages = await read_messages(response, 2)
        assert messages[1] == {"comment": "keep-alive"}
        for _ in range(5):  # viewers come and go mid-stream
            async with client.stream("GET", "/api/stream") as response:
                await read_messages(response, 1)
        log.emit("join", peer="z", tier="cpu", role="r")
        assert len((await client.get("/api/events")).json()) == 1

    run_with_server(source, scenario, keepalive=0.2)


def test_stream_sends_a_reset_when_the_file_starts_over(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(line(join("a")))
    source = FileSource(path, poll=0.02)

    async def scenario(client, url, nursery):
        async with client.stream("GET", "/api/stream") as response:
            await read_messages(response, 2)
            path.unlink()
            path.write_text(line(join("b")) + line(join("c")))
            messages = await read_messages(response, 1)
        assert messages[0].get("event") == "reset", messages

    run_with_server(source, scenario)


def test_cancelling_the_nursery_stops_the_server_with_a_stream_open():
    log = EventLog()

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(LiveSource(log)), port=0))
            async with httpx.AsyncClient(base_url=url) as client:
                async with client.stream("GET", "/api/stream") as response:
                    await read_messages(response, 1)
                    started = time.monotonic()
                    nursery.cancel_scope.cancel()
        return time.monotonic() - started

    assert trio.run(main) < 2


def test_server_reports_the_real_port_and_refuses_a_busy_one():
    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(LiveSource(EventLog())), port=0))
            port = int(url.rsplit(":", 1)[1])
            assert port > 0
            with pytest.raises(OSError):
                await nursery.start(partial(serve, create_app(LiveSource(EventLog())), port=port))
            nursery.cancel_scope.cancel()
    trio.run(main)
