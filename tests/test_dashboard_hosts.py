"""The dashboard answers only requests addressed to it (the Host header check against DNS rebinding)."""
from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
import trio

from swarm_node.dashboard.app import create_app
from swarm_node.dashboard.server import serve
from swarm_node.dashboard.sources import LiveSource
from swarm_node.events import EventLog

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
