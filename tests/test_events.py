"""The event log's bounds: events.jsonl is rotated at a size, memory holds the newest events, and
indices stay absolute for the dashboard's sources (which follow a rotating file)."""
from __future__ import annotations

import json
import os
from functools import partial

import httpx
import trio

from swarm_node.dashboard.app import create_app
from swarm_node.dashboard.server import serve
from swarm_node.dashboard.sources import FileSource, LiveSource
from swarm_node.events import EventLog, read_jsonl, rotated_paths


def emit(log: EventLog, n: int, start: int = 0, pad: int = 0) -> None:
    for i in range(start, start + n):
        log.emit("join", peer=f"p{i}", tier="cpu", role="x" * pad)


def peers(events) -> list[int]:
    return [int(e["peer"][1:]) for e in events]


# --- EventLog ---------------------------------------------------------------------------------

def test_the_file_is_rotated_when_it_passes_max_bytes(tmp_path):
    path = tmp_path / "events.jsonl"
    old = tmp_path / "events.jsonl.1"
    log = EventLog(path, max_bytes=2000, keep=None)
    for i in range(20):
        before = path.stat().st_size
        emit(log, 1, start=i, pad=200)
        if old.exists():
            break
        assert path.stat().st_size < 2000
    last = old.read_bytes().splitlines(keepends=True)[-1]
    assert json.loads(last)["peer"] == f"p{i}"  # the event that passed the limit went to the old file
    assert before < 2000 <= old.stat().st_size == before + len(last)
    assert path.stat().st_size == 0
    emit(log, 40, start=i + 1, pad=200)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1"]  # one old file
    assert old.stat().st_size < 2000 + 400 and path.stat().st_size < 2000
    kept = peers(read_jsonl(path))  # the rotated file first, then the current one: in order, no gap
    assert kept == list(range(i + 41 - len(kept), i + 41)) and len(kept) > 7
    assert len(log.events) == i + 41 and log.first == 0  # memory was not bounded here


def test_rotation_keeps_as_many_old_files_as_asked(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1000, backups=3)
    emit(log, 60, pad=100)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2",
                                                           "events.jsonl.3"]
    assert rotated_paths(path) == [tmp_path / "events.jsonl.3", tmp_path / "events.jsonl.2",
                                   tmp_path / "events.jsonl.1"]
    kept = peers(read_jsonl(path))
    assert kept == list(range(60 - len(kept), 60))


def test_a_log_reopened_over_a_full_file_rotates_it(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"type": "join", "peer": "p0"}) + "\n" + "x" * 5000 + "\n")
    log = EventLog(path, max_bytes=4000)
    emit(log, 1, start=1)
    log.close()
    assert (tmp_path / "events.jsonl.1").stat().st_size > 5000
    assert path.stat().st_size == 0  # the first event went to the old file, which was then rotated
    assert peers(read_jsonl(path)) == [0, 1]  # the non-JSON line is skipped


def test_no_rotation_without_a_limit(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", max_bytes=None)
    emit(log, 50, pad=100)
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]


def test_memory_holds_the_newest_events_and_indices_stay_absolute():
    log = EventLog(keep=100)
    emit(log, 1000)
    assert log.count() == 1000
    assert 100 - 100 // 16 <= len(log.events) <= 100
    assert log.first == 1000 - len(log.events)
    assert peers(log.events) == list(range(log.first, 1000))
    first, events = log.read(0)  # asking for an index long dropped: from the oldest kept
    assert first == log.first and peers(events) == list(range(log.first, 1000))
    assert log.read(995) == (995, log.events[-5:])
    assert peers(log.read(950, 3)[1]) == [950, 951, 952]
    assert log.read(1000) == (1000, []) and log.read(5000)[1] == []
    assert peers(log.snapshot(998)) == [998, 999]

    async def main():
        async def later():
            await trio.sleep(0.05)
            emit(log, 1, start=1000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            with trio.fail_after(3):
                await log.wait_beyond(1000)  # absolute: returns once event 1000 exists
        assert log.count() == 1001
    trio.run(main)


def test_junk_discoveries_are_bounded_on_disk_and_in_memory(tmp_path):
    """The finding: 150 junk discoveries of 30 KB each were all stored and all held."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1_000_000, keep_bytes=500_000)
    for i in range(150):
        log.emit("discovery", id=f"{i:064x}", peer=f"p{i}", tier="cpu", state=f"{i:064x}", parent="0" * 64,
                 val_bpb=1.0, test_bpb=1.0, description="junk", diff="+" + "x" * 30_000)
    log.close()
    assert log.count() == 150 and log.first == 150 - len(log.events)
    assert 500_000 * 15 // 16 - 31_000 <= sum(len(json.dumps(e)) for e in log.events) <= 500_000
    assert peers(log.events) == list(range(log.first, 150))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1"]
    assert all(p.stat().st_size < 1_000_000 + 31_000 for p in tmp_path.iterdir())
    on_disk = read_jsonl(path)  # what is left of the 150: a reader counts from the oldest file left
    assert 33 < len(on_disk) <= 2 * 34 and peers(on_disk) == list(range(150 - len(on_disk), 150))
    source = FileSource(path, keep_bytes=200_000)
    first, events = source.read(0)
    assert len(events) <= 200_000 // 30_000 and peers(events) == list(range(150 - len(events), 150))
    assert source.count() == len(on_disk) and first == len(on_disk) - len(events)


def test_the_newest_event_is_held_even_when_it_alone_passes_the_byte_limit():
    log = EventLog(keep_bytes=1000)
    emit(log, 3, pad=5000)
    assert peers(log.events) == [2] and log.first == 2 and log.read(0) == (2, log.events)


# --- FileSource following a rotating file ------------------------------------------------------

def test_file_source_follows_the_file_through_rotations(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=3000, backups=1)
    source = FileSource(path, poll=0.01)
    seen = []
    for step in range(30):  # the reader looks at least once per rotation (each ~11 events)
        emit(log, 4, start=4 * step, pad=200)
        first, events = source.read(len(seen))
        assert first == len(seen)
        seen += events
    log.close()
    assert (tmp_path / "events.jsonl.1").exists()
    assert peers(seen) == list(range(120))
    assert source.generation == 0 and source.count() == 120


def test_file_source_finishes_a_line_torn_across_the_rotation(tmp_path):
    path = tmp_path / "events.jsonl"
    a, b, c = (json.dumps({"type": "join", "peer": f"p{i}"}) + "\n" for i in range(3))
    path.write_text(a + b[:10])  # the writer is mid-line when the reader looks
    source = FileSource(path)
    assert peers(source.snapshot(0)) == [0]
    with open(path, "a") as f:
        f.write(b[10:])
    os.replace(path, tmp_path / "events.jsonl.1")
    path.write_text(c)
    assert peers(source.snapshot(0)) == [0, 1, 2] and source.generation == 0


def test_file_source_reads_the_rotated_file_first(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=2000)
    emit(log, 12, pad=200)
    log.close()
    assert (tmp_path / "events.jsonl.1").exists()
    source = FileSource(path)
    kept = peers(source.snapshot(0))
    assert kept == list(range(12 - len(kept), 12)) and len(kept) > 8


def test_file_source_follows_several_rotations_while_old_files_remain(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1000, backups=3)
    source = FileSource(path)
    emit(log, 2, pad=100)
    assert peers(source.snapshot(0)) == [0, 1]
    emit(log, 20, start=2, pad=100)  # two rotations before the reader looks again
    assert len(rotated_paths(path)) >= 2
    assert peers(source.snapshot(0)) == list(range(22)) and source.generation == 0
    log.close()


def test_file_source_starts_over_when_its_file_was_rotated_away(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1000, backups=1)
    source = FileSource(path)
    emit(log, 2, pad=100)
    assert peers(source.snapshot(0)) == [0, 1]
    emit(log, 30, start=2, pad=100)  # the file it followed was rotated out of existence
    log.close()
    kept = peers(source.snapshot(0))
    assert source.generation == 1  # readers reload
    assert kept == list(range(32 - len(kept), 32)) and kept == peers(read_jsonl(path))


def test_file_source_holds_the_newest_events_with_absolute_indices(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    emit(log, 500)
    source = FileSource(path, keep=50)
    assert source.count() == 500
    first, events = source.read(0)
    assert first == 500 - len(events) and len(events) <= 50
    assert peers(events) == list(range(first, 500))
    emit(log, 100, start=500)
    log.close()
    assert source.count() == 600
    assert source.read(590, 5) == (590, source.read(590)[1][:5])
    assert peers(source.read(590, 5)[1]) == [590, 591, 592, 593, 594]


# --- the server with bounded sources -----------------------------------------------------------

def _ids(text: str) -> list[int]:
    return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


async def _stream_ids(client, count: int, **kwargs) -> list[int]:
    ids: list[int] = []
    async with client.stream("GET", "/api/stream", **kwargs) as response:
        async for chunk in response.aiter_text():
            ids += _ids(chunk)
            if len(ids) >= count:
                return ids
    return ids


def test_api_and_stream_use_absolute_indices_after_events_were_dropped():
    log = EventLog(keep=100)
    emit(log, 1000)
    first = log.first
    source = LiveSource(log)

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(source), port=0))
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                with trio.fail_after(10):
                    meta = (await client.get("/api/meta")).json()
                    assert (meta["count"], meta["first"]) == (1000, first)
                    response = await client.get("/api/events?since=0")
                    assert response.headers["x-first-index"] == str(first)
                    assert peers(response.json()) == list(range(first, 1000))
                    response = await client.get("/api/events?since=998")
                    assert response.headers["x-first-index"] == "998" and peers(response.json()) == [998, 999]
                    # a stream from an index long dropped starts at the oldest kept, with true ids
                    assert await _stream_ids(client, 1000 - first) == list(range(first, 1000))
                    # a browser reconnecting with an old Last-Event-ID: the same
                    ids = await _stream_ids(client, 1000 - first, headers={"Last-Event-ID": "3"})
                    assert ids == list(range(first, 1000))
                    assert await _stream_ids(client, 2, params={"since": 998}) == [998, 999]
                    # an id beyond what this source ever had: it started over (a restarted node)
                    async with client.stream("GET", "/api/stream", headers={"Last-Event-ID": "5000"}) as r:
                        text = "".join([chunk async for chunk in r.aiter_text()])
                    assert "event: reset" in text
            nursery.cancel_scope.cancel()
    trio.run(main)


def test_stream_goes_on_through_a_rotation_of_the_followed_file(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=3000)
    emit(log, 3, pad=200)
    source = FileSource(path, poll=0.01)

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(source), port=0))
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                with trio.fail_after(10):
                    async with client.stream("GET", "/api/stream") as response:
                        text, ids, written = "", [], 3
                        async for chunk in response.aiter_text():
                            text += chunk
                            ids += _ids(chunk)
                            if written < 40 and len(ids) == written:
                                emit(log, 2, start=written, pad=200)  # rotates every ~11 events
                                written += 2
                            if len(ids) >= 40:
                                break
                    assert ids == list(range(len(ids))) and "reset" not in text
                    assert (tmp_path / "events.jsonl.1").exists() and source.generation == 0
            nursery.cancel_scope.cancel()
    trio.run(main)
    log.close()
