"""The dashboard's server side: event sources, the JSON API, server-sent events, the export."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import trio

from swarm_node.dashboard.app import STATIC, create_app, page_scripts
from swarm_node.dashboard.command import add_dashboard_parser, export_html, source_for
from swarm_node.dashboard.server import serve
from swarm_node.dashboard.sources import FileSource, LiveSource
from swarm_node.events import EventLog

REPO = Path(__file__).resolve().parent.parent
# the model's files (the page's state, no drawing), in the order the page loads them
MODEL_FILES = [str(STATIC / name) for name in page_scripts() if name.startswith("model-")]
LOAD_MODEL = "global.window = {}; for (const file of process.argv.slice(1)) require(file);\n"  # node -e, MODEL_FILES


def line(event: dict) -> str:
    return json.dumps(event) + "\n"


def join(peer: str, t: float = 0.0) -> dict:
    return {"type": "join", "t": t, "wall": 1.0 + t, "peer": peer, "tier": "cpu", "role": "init-norm"}


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


# --- Host header check (DNS rebinding) --------------------------------------------------------

async def asgi_status(app, hosts: list[bytes]) -> tuple[int, bytes]:
    """Call the ASGI app with these Host headers (none, one or several); its status and body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/api/meta", "raw_path": b"/api/meta", "query_string": b"",
             "root_path": "", "headers": [(b"host", h) for h in hosts], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8765)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def statuses(hosts: list[str], **kwargs) -> dict[str, int]:
    app = create_app(LiveSource(EventLog()), **kwargs)

    async def main():
        return {h: (await asgi_status(app, [h.encode()]))[0] for h in hosts}
    return trio.run(main)


LOOPBACK_OK = ["localhost:8765", "localhost", "LocalHost:8765", "localhost.:8765", "127.0.0.1:8765", "127.0.0.1",
               "[::1]:8765", "[::1]", "127.0.0.2:80"]
FOREIGN = ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "localhost.evil.example:8765",
           "evil.example:8765@localhost", "localhost:8765:1", "::1", "[::1].evil.example", "[evil.example]",
           "10.1.2.3:8765", "0.0.0.0:8765", "", " "]


def test_only_requests_for_localhost_are_answered_by_default():
    seen = statuses(LOOPBACK_OK + FOREIGN)
    assert {h: seen[h] for h in LOOPBACK_OK} == {h: 200 for h in LOOPBACK_OK}
    assert {h: seen[h] for h in FOREIGN} == {h: 400 for h in FOREIGN}

    async def main():
        app = create_app(LiveSource(EventLog()))
        status, body = await asgi_status(app, [])  # no Host header at all
        assert status == 400 and b"DNS rebinding" in body
        assert (await asgi_status(app, [b"localhost", b"evil.example"]))[0] == 400  # two: refused
    trio.run(main)


def test_the_address_listened_on_is_answered_too():
    seen = statuses(["192.168.1.5:8765", "192.168.1.6:8765", "localhost:8765", "evil.example"],
                    allowed_hosts=["192.168.1.5"])
    assert seen == {"192.168.1.5:8765": 200, "192.168.1.6:8765": 400, "localhost:8765": 200, "evil.example": 400}
    assert statuses(["mybox.lan:8765", "MyBox.lan", "evil.example"], allowed_hosts=["mybox.lan"]) == {
        "mybox.lan:8765": 200, "MyBox.lan": 200, "evil.example": 400}
    for v6 in ("fd00::5", "[fd00::5]", "FD00:0::5"):
        assert statuses(["[fd00::5]:8765", "[fd00::6]:8765"], allowed_hosts=[v6]) == {
            "[fd00::5]:8765": 200, "[fd00::6]:8765": 400}
    with pytest.raises(ValueError):
        create_app(LiveSource(EventLog()), allowed_hosts=["not a host"])


def test_a_wildcard_address_answers_ip_addresses_and_this_machines_name():
    import socket
    name = socket.gethostname().lower()
    for wildcard in ("0.0.0.0", "::", "[::]"):
        seen = statuses(["10.1.2.3:8765", "[fd00::1]:8765", "0.0.0.0:8765", f"{name}:8765", "localhost",
                         "evil.example", "127.0.0.1.evil.example"], allowed_hosts=[wildcard])
        assert seen == {"10.1.2.3:8765": 200, "[fd00::1]:8765": 200, "0.0.0.0:8765": 200, f"{name}:8765": 200,
                        "localhost": 200, "evil.example": 400, "127.0.0.1.evil.example": 400}, wildcard
    assert statuses(["evil.example:8765"], allowed_hosts=["*"]) == {"evil.example:8765": 200}


async def raw_request(url: str, request: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request.encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_real_server_refuses_a_foreign_host_header():
    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, create_app(LiveSource(EventLog())), port=0))
            port = url.rsplit(":", 1)[1]
            with trio.fail_after(10):
                get = "GET /api/meta HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n"
                status, body = await raw_request(url, get.format("evil.example:" + port))
                assert status == 400 and b"DNS rebinding" in body
                assert (await raw_request(url, get.format("127.0.0.1.evil.example:" + port)))[0] == 400
                assert (await raw_request(url, "GET /api/meta HTTP/1.0\r\n\r\n"))[0] == 400  # no Host
                assert (await raw_request(url, get.format("127.0.0.1.evil.example:" + port).replace(
                    "/api/meta", "/api/stream")))[0] == 400
                status, body = await raw_request(url, get.format("localhost:" + port))
                assert status == 200 and json.loads(body)["mode"] == "live"
                assert (await raw_request(url, get.format(f"[::1]:{port}")))[0] == 200
                async with httpx.AsyncClient(base_url=url, timeout=5) as client:  # as a browser would
                    assert (await client.get("/")).status_code == 200
            nursery.cancel_scope.cancel()
    trio.run(main)


# --- command and export ----------------------------------------------------------------------

def parse(*argv):
    top = argparse.ArgumentParser()
    add_dashboard_parser(top.add_subparsers(dest="command"))
    return top.parse_args(["dashboard", *argv])


def test_dashboard_arguments(tmp_path, monkeypatch):
    args = parse("--replay", str(tmp_path))
    assert (args.host, args.port, args.open) == ("127.0.0.1", 8765, False)
    source = source_for(args)
    assert source.mode == "replay" and source.path == tmp_path / "events.jsonl"
    assert source_for(parse("--replay", str(tmp_path / "events.jsonl"))).path == tmp_path / "events.jsonl"
    monkeypatch.setenv("SWARM_NODE_HOME", str(tmp_path / "home"))
    source = source_for(parse("--port", "0"))
    assert source.mode == "home" and source.path == (tmp_path / "home" / "events.jsonl").resolve()
    assert not (tmp_path / "home").exists()  # a viewer never creates a home
    with pytest.raises(SystemExit):
        parse("--home", "a", "--replay", "b")
    args = parse("--host", "0.0.0.0", "--allow-host", "proxy.example", "--allow-host", "b.example")
    assert args.allow_host == ["proxy.example", "b.example"] and parse().allow_host == []


def test_dashboard_command_refuses_a_bad_allowed_host(tmp_path, capsys):
    (tmp_path / "events.jsonl").write_text(line(join("a")))
    args = parse("--replay", str(tmp_path), "--allow-host", "a b")
    assert args.func(args) == 2
    assert "not a host name" in capsys.readouterr().err


def test_dashboard_command_serves_until_interrupted(tmp_path):
    (tmp_path / "events.jsonl").write_text(line(join("a")))
    code = ("import argparse, sys; from swarm_node.dashboard.command import add_dashboard_parser;"
            "top = argparse.ArgumentParser(); add_dashboard_parser(top.add_subparsers());"
            "args = top.parse_args(sys.argv[1:]); sys.exit(args.func(args))")
    proc = subprocess.Popen([sys.executable, "-c", code, "dashboard", "--replay", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = proc.stdout.readline()
        assert first.startswith("dashboard: http://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[1]
        assert httpx.get(url + "api/meta", timeout=5).json()["mode"] == "replay"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dashboard_command_without_the_replay_file(tmp_path):
    args = parse("--replay", str(tmp_path / "missing"))
    assert args.func(args) == 2


class ScriptReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found, self._open = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = (dict(attrs), [])

    def handle_data(self, data):
        if self._open:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._open:
            self.found.append((self._open[0], "".join(self._open[1])))
            self._open = None


def test_export_is_one_self_contained_file(tmp_path):
    events = [join("a"), {"type": "discovery", "t": 1.0, "wall": 2.0, "id": "ab" * 32, "peer": "a", "tier": "cpu",
                          "state": "ab" * 32, "parent": "cd" * 32, "val_bpb": 2.0, "test_bpb": 2.01,
                          "description": "x", "diff": "+</script><script>alert(1)</script>\n+\u2028"}]
    out = export_html(events, tmp_path / "report.html", "night run")
    html = out.read_text()
    assert 'src="static/' not in html and 'href="static/' not in html
    scripts = ScriptReader()
    scripts.feed(html)
    # the events, then each script of the page in its order: the diff did not end one early
    assert len(scripts.found) == 1 + len(page_scripts())
    assert [text.strip("\n") for _, text in scripts.found[1:]] == [
        (STATIC / name).read_text(encoding="utf-8").replace("</script", "<\\/script").strip("\n") for name in page_scripts()]
    attrs, text = scripts.found[0]
    assert attrs == {"id": "swarm-data", "type": "application/json"}
    data = json.loads(text)
    assert data["title"] == "night run" and data["events"] == events
    assert "cytoscape" in html and "uPlot" in html and "--received" in html
    assert os.path.getsize(out) < 1_000_000


def test_page_model_measures_spread_and_lineage():
    """The model (model-*.js: the page's state) under node: reach, time to 50 % / 100 %, the lineage of a best."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    h = lambda c: c * 64  # noqa: E731 - state hashes
    events = [join(p, 0) for p in ("a", "b", "c", "d")] + [
        {"type": "link", "t": 0, "wall": 1, "a": "a", "b": "b"},
        {"type": "experiment", "t": 1, "wall": 2, "peer": "a", "id": "a-0", "state": h("0"), "description": "baseline",
         "status": "baseline", "val_bpb": 2.0, "test_bpb": 2.01, "tier": "cpu"},
        {"type": "discovery", "t": 10, "wall": 11, "id": h("1"), "peer": "a", "tier": "cpu", "state": h("1"),
         "parent": h("0"), "val_bpb": 1.9, "test_bpb": 1.92, "description": "x", "diff": "+x"},
        {"type": "receipt", "t": 11, "wall": 12, "id": h("1"), "peer": "b", "from": "a"},
        {"type": "receipt", "t": 13, "wall": 14, "id": h("1"), "peer": "c", "from": "b"},
        {"type": "adoption", "t": 20, "wall": 21, "id": h("1"), "peer": "d", "state": h("1"), "val_bpb": 1.9,
         "verified": True},
        {"type": "discovery", "t": 30, "wall": 31, "id": h("2"), "peer": "d", "tier": "cpu", "state": h("2"),
         "parent": h("1"), "val_bpb": 1.8, "test_bpb": 1.83, "description": "y", "diff": "+y"},
        {"type": "reject", "t": 31, "wall": 32, "peer": "a", "from": "d", "reason": "code"},
        {"type": "leave", "t": 40, "wall": 41, "peer": "c"},
    ]
    script = LOAD_MODEL + """
    const m = new window.SwarmModel.Swarm();
    for (const e of JSON.parse(require('fs').readFileSync(0, 'utf8'))) m.apply(e);
    const d = m.discoveries.get('1'.repeat(64));
    console.log(JSON.stringify({counters: m.counters, t50: d.t50, t100: d.t100, adopted: d.adopted.size,
      share: m.share(d), best: m.best.get('cpu'), lineage: m.lineage('cpu').chain.map(s => s.state[0]),
      trajectory: m.trajectory.get('cpu'), via: [...d.via]}));
    """
    out = subprocess.run([node, "-e", script, *MODEL_FILES],
                         input=json.dumps(events), capture_output=True, text=True, timeout=30, check=True)
    seen = json.loads(out.stdout)
    assert seen["t50"] == 1 and seen["t100"] == 10  # 2 of 4 peers after 1 s, all 4 (d adopted) after 10 s
    assert seen["adopted"] == 1 and seen["via"] == [["b", "a"], ["c", "b"]]
    assert seen["share"] == {"reached": 3, "alive": 3, "share": 1}  # c left
    assert seen["counters"]["peers"] == 3 and seen["counters"]["links"] == 1
    assert seen["counters"]["discoveries"] == 2 and seen["counters"]["rejected"] == 1
    assert seen["best"]["val"] == 1.8 and seen["best"]["peer"] == "d" and seen["best"]["test"] == 1.83
    assert seen["lineage"] == ["0", "1", "2"]
    assert seen["trajectory"] == [[1, 2.0], [10, 1.9], [30, 1.8]]


def _run_model(script: str, data) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run([node, "-e", LOAD_MODEL + script, *MODEL_FILES],
                         input=json.dumps(data), capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_page_model_measures_real_gossip_delivery_from_wall():
    """A replay's virtual clock puts every receipt at a window's end (t=300): one step. The model
    measures the real delivery from `wall`: ms from the first discovery event to each peer's first
    receipt by gossip (not one inferred from its register), and when 50 % / 100 % of the peers had it."""
    w0 = 1_796_308_683.213
    d = {"type": "discovery", "t": 10, "wall": w0, "id": "x", "peer": "a", "tier": "cpu", "state": "x"}
    receipts = [{"type": "receipt", "t": 300, "wall": w0 + 0.005, "id": "x", "peer": "e", "via": "presence"}] + [
        {"type": "receipt", "t": 300, "wall": round(w0 + ms / 1000, 3), "id": "x", "peer": p, "from": "a"}
        for p, ms in (("c", 20), ("b", 12), ("d", 35), ("e", 48), ("b", 70))]  # b's second receipt: no delivery
    again = dict(d, t=250, wall=w0 + 0.9, peer="b")  # a later author of the same state: still from the first
    runs = {"wall": [join(p) for p in "abcde"] + [d] + receipts + [again],
            "no wall": [{k: v for k, v in e.items() if k != "wall"} for e in [join(p) for p in "abcde"] + [d] + receipts],
            "e by presence": [join(p) for p in "abcde"] + [d] + [r for r in receipts if r["peer"] != "e" or "via" in r],
            "presence only": [join(p) for p in "abcde"] + [d, receipts[0]]}
    seen = _run_model("""
    const out = {};
    for (const [name, events] of Object.entries(JSON.parse(require('fs').readFileSync(0, 'utf8')))) {
      const m = new window.SwarmModel.Swarm();
      for (const e of events) m.apply(e);
      const d = m.discoveries.get('x');
      const r = m.delivery(d);
      out[name] = {t50: d.t50, t100: d.t100, collapsed: m.collapsed(d),
        real: r && {ms: r.ms.map((x) => Math.round(x * 1000) / 1000), t50: r.t50 && Math.round(r.t50), t100: r.t100 && Math.round(r.t100)}};
    }
    console.log(JSON.stringify(out));
    """, runs)
    assert seen["wall"] == {"t50": 290, "t100": 290, "collapsed": True,
                            "real": {"ms": [12, 20, 35, 48], "t50": 20, "t100": 48}}
    assert seen["no wall"]["real"] is None and seen["no wall"]["t100"] == 290  # older files: virtual only
    # e had it only by its register: 100 % of the peers, not by gossip
    assert seen["e by presence"]["real"] == {"ms": [12, 20, 35], "t50": 20, "t100": None}
    assert seen["presence only"]["real"] is None and not seen["presence only"]["collapsed"]


def test_page_model_credits_only_measured_changes():
    """The model folds `effect` events into its discoveries' credit, as swarm_node/credit.py words it:
    a technique is named with its effect only when measured; the rest is "combined, not ablated"."""
    h = lambda c: c * 64  # noqa: E731 - state hashes
    block = "--- a/train.py\n+++ b/train.py\n@@ -12,4 +12,4 @@\n # hyperparameters\n"

    def discovery(t, state, diff, tier="cpu", **extra):
        return {"type": "discovery", "t": t, "wall": 1 + t, "id": f"{tier}:{state}", "peer": "a", "tier": tier,
                "state": state, "parent": h("0"), "val_bpb": 1.9, "test_bpb": 1.92, "description": "x",
                "diff": block + diff, **extra}

    def effect(t, state, name, value, effect, se, kind, tier="cpu"):
        return {"type": "effect", "t": t, "wall": 1 + t, "peer": "a", "tier": tier, "state": state, "name": name,
                "value": value, "effect": effect, "se": se, "seeds": [0, 1], "kind": kind}

    events = [join("a"),
              discovery(1, h("1"), "-NORM = 'layernorm'\n+NORM = 'rmsnorm'  # x\n"),
              effect(2, h("1"), "NORM", "rmsnorm", 0.0123, 0.004, "single"),
              discovery(3, h("2"), "-LEARNING_RATE = 3e-4\n-INIT = 'normal'\n+LEARNING_RATE = 6e-4\n+INIT = 'kaiming'\n"),
              effect(4, h("2"), "LEARNING_RATE", 0.0006, 0.0081, 0.0016, "ablation"),
              effect(4, h("2"), "INIT", "kaiming", 0.02, 0.01, "ablation", tier="gpu-large"),  # another tier's
              discovery(5, h("3"), "-DROPOUT = 0.1\n+DROPOUT = 0.0\n"),
              effect(6, h("4"), "TIE_EMBEDDINGS", True, 0.001, 0.003, "single"),  # before its discovery
              discovery(7, h("4"), "-TIE_EMBEDDINGS = False\n+TIE_EMBEDDINGS = True\n"),
              discovery(8, h("5"), "+WARMUP_STEPS = 0\n", hparams={"ACTIVATION": "silu", "WARMUP_STEPS": 0}),
              discovery(9, h("6"), " # only code changed\n+x = 1\n")]
    seen = _run_model("""
    const m = new window.SwarmModel.Swarm();
    for (const e of JSON.parse(require('fs').readFileSync(0, 'utf8'))) m.apply(e);
    console.log(JSON.stringify(m.discoveryOrder.map((id) => m.credit(m.discoveries.get(id)).map((c) => [c.status, c.text]))));
    """, events)
    assert seen == [
        [["found", "RMSNorm +0.0123 bpb (single, SE 0.0040)"]],
        [["found", "learning rate 0.0006 +0.0081 bpb (ablation, SE 0.0016)"],
         ["combined", "Kaiming init: combined, not ablated"]],
        [["not measured", "no dropout: not measured"]],
        [["no effect", "tied embeddings: no measurable effect (+0.0010 bpb, single, SE 0.0030)"]],
        [["combined", "SiLU activation, no warmup: combined, not ablated"]],
        [],
    ]


def test_page_model_names_techniques_as_credit_py_does():
    """model-credit.js mirrors credit.py's table (its source of truth): the same diff lines give the same names."""
    from swarm_node.credit import NAMES, TECHNIQUES, changes_from_diff, technique
    from swarm_node.research.hparams import format_literal

    values = [v for (_, v) in TECHNIQUES] + [0.006, 6e-4, 1e-5, 3, 1.0, 1234567.0, 0.95, "x", True]
    lines = [f"+{name} = {format_literal(value)}  # c" for name in sorted({n for n, _ in TECHNIQUES} | set(NAMES))
             for value in values] + ["+BETA2 = 0.95", "+X = 'a#b'", "+X == 1", "+X = None", "+++ b/train.py"]
    expected = [[[name, technique(name, value)] for name, value in changes_from_diff(line).items()] for line in lines]
    seen = _run_model("""
    const M = window.SwarmModel;
    console.log(JSON.stringify(JSON.parse(require('fs').readFileSync(0, 'utf8')).map((line) =>
      M.changesFromDiff(line).map((c) => [c.name, M.technique(c.name, c.value, c.float)]))));
    """, lines)
    assert seen == expected
