"""A hostile bootstrap peer and a crashing baseline, against real `swarm-node join` processes.

    pex      (module-scoped fixture) a fresh node with a hostile bootstrap peer that offers a
             crashing "best", then Presence messages that try to make it dial a third party's port.
    crash    `swarm-node join` on a target whose baseline crashes (its own tmp_path).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.pubsub.pb import rpc_pb2

from conftest import swarm_node
from hostile_node import NODE_ARGS, NodeProc, _fail, bench_of, start_node, toy_copy
from hostile_peer import BestServer, HostilePeer, Identity
from swarm_node.messages import PRESENCE_TOPIC, BenchKey, Best, Presence, state_hash
from swarm_node.wire import encode
from swarm_node.p2p.identity import peer_id_of
from swarm_node.research.hparams import write_block
from swarm_node.testing import peer_of


# ---- 7 and 10: a hostile bootstrap peer --------------------------------------------------------------------


class Listener:
    """A plain TCP port on 127.0.0.1 counting connections (closed at once)."""

    def __init__(self):
        self.accepted = 0
        self.port = 0
        self.times: list[float] = []  # trio clock of each connection

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        task_status.started()
        with sock:
            while True:
                conn, _ = await sock.accept()
                self.accepted += 1
                self.times.append(trio.current_time())
                conn.close()


@dataclass
class Pex:
    node: NodeProc | None = None
    bootstrap: str = ""
    relu_state: str = ""
    target_state: str = ""
    asked_best: int = 0
    offered_author: str = ""
    asked_states: list = field(default_factory=list)
    started_ok: bool = False
    first_head: str = ""  # the node's head and register right after the fallback baseline
    first_best: dict | None = None
    status: dict | None = None
    third_party_dials: int = -1  # connections to the port named with another id or none
    own_dials: int = -1  # connections to the ports named with the author's own id
    own_dial_window: float = 0.0
    own_dial_times: list = field(default_factory=list)  # seconds after the first own-id Presence
    timings: dict = field(default_factory=dict)


async def _presence_attack(p: Pex, node: NodeProc, bench: BenchKey) -> None:
    forwarder = HostilePeer([PRESENCE_TOPIC, bench.topic()])
    third, own1, own2 = Listener(), Listener(), Listener()
    async with trio.open_nursery() as nursery:
        for thing in (forwarder.net, third, own1, own2):
            await nursery.start(thing.run)
        await forwarder.connect(node.address, [PRESENCE_TOPIC])
        other, y1, y2, x = Identity(), Identity(), Identity(), Identity()

        def presence(author: Identity, addrs: list[str]) -> rpc_pb2.Message:
            msg = Presence(author=author.id, ts=time.time(), bench=bench, role="init-norm", hardware={},
                           head="e" * 64, version="x", addrs=addrs)
            return author.sign(PRESENCE_TOPIC, encode(msg))
        tp = third.port
        for _ in range(3):  # another peer's id at our port; no id at all
            await forwarder.send(node.peer, presence(y1, [f"/ip4/127.0.0.1/tcp/{tp}/p2p/{other.id}",
                                                          f"/dns4/localhost/tcp/{tp}/p2p/{other.id}"]),
                                 presence(y2, [f"/ip4/127.0.0.1/tcp/{tp}", f"/ip4/127.0.0.1/tcp/{tp}/p2p/{node.peer}"]),
                                 pause=0.3)
            await trio.sleep(1.0)
        await trio.sleep(3.0)
        own = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{x.id}" for port in (own1.port, own2.port)] + \
              [f"/ip4/127.0.{k}.1/tcp/{own1.port}/p2p/{x.id}" for k in range(1, 15)]
        t = trio.current_time()
        for _ in range(5):  # the author's own id: dialled, but at most 2 addresses and once a minute
            await forwarder.send(node.peer, presence(x, own))
            await trio.sleep(1.0)
        with trio.move_on_after(15):
            while own1.accepted + own2.accepted == 0:
                await trio.sleep(0.2)
        await trio.sleep(5.0)
        p.own_dial_window = trio.current_time() - t
        p.third_party_dials = third.accepted
        p.own_dials = own1.accepted + own2.accepted
        p.own_dial_times = sorted((round(x - t, 2), port) for listener, port in ((own1, "a"), (own2, "b"))
                                  for x in listener.times)
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def pex(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pex")
    target = toy_copy(tmp, SLEEP_SECONDS=1.0)  # runs of 1 s: the register is read before a first keep
    root = (target / "train.py").read_text()
    relu = write_block(root, {"ACTIVATION": "relu"})  # in bounds, and crashes (before its sleep)
    bench = bench_of(target)
    p = Pex(relu_state=state_hash(relu), target_state=state_hash(root))
    started = time.monotonic()

    async def main():
        p.offered_author = create_peer_id()
        hostile = BestServer([PRESENCE_TOPIC, bench.topic()], sources={p.relu_state: relu},
                             best={bench.tier: Best(bench=bench, state=p.relu_state, val_bpb=1.0, test_bpb=1.01,
                                                    author=p.offered_author)})
        async with trio.open_nursery() as nursery:
            await nursery.start(hostile.net.run)
            p.bootstrap = hostile.id
            p.node = node = start_node(tmp, target, "--bootstrap", hostile.net.listen_addrs()[0],
                                       "--max-experiments", "1000", "--max-seconds", "4")
            node.address = await node.wait_async(node.printed_address, 60, "the node's multiaddr")
            node.peer = peer_of(node.address)
            p.started_ok = await node.until(lambda: node.rows(
                "SELECT 1 FROM experiments WHERE status = 'baseline' AND state = ?", (p.target_state,)), 60)
            p.timings["fallback baseline"] = time.monotonic() - started
            if p.started_ok and await node.until(lambda: node.rows("SELECT * FROM best"), 5):
                p.first_best = node.rows("SELECT * FROM best")[0]
                p.first_head = node.meta("head")["state"]
            p.asked_best, p.asked_states = hostile.best_asked, list(hostile.asked)
            if p.started_ok:
                await _presence_attack(p, node, bench)
                p.timings["presence attack"] = time.monotonic() - started
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        if p.node.alive():
            p.status = p.node.status()
        print("pex timings (s):", {k: round(v, 1) for k, v in p.timings.items()})
        yield p
    finally:
        if p.node is not None:
            p.node.stop()


def lineage(node: NodeProc, state: str) -> list[str]:
    """`state`, its parent, ... up to a state without one (the node's states table)."""
    chain: list[str] = []
    while state and state not in chain and len(chain) < 1000:
        chain.append(state)
        rows = node.rows("SELECT parent FROM states WHERE hash = ?", (state,))
        state = rows[0]["parent"] if rows else None
    return chain


def create_peer_id() -> str:
    return peer_id_of(create_new_key_pair())


def test_a_crashing_best_from_the_bootstrap_peer_falls_back_to_the_target(pex):
    p, node = pex, pex.node
    assert p.asked_best >= 1 and p.relu_state in p.asked_states, \
        f"the node never fetched the hostile best (asked best {p.asked_best}x, states {p.asked_states})"
    assert p.started_ok, _fail(node, "no baseline of the target's train.py after the hostile start state")
    assert "failed its baseline here; starting from the target" in node.log(), node.log()[-4000:]
    crashed = node.rows("SELECT status FROM experiments WHERE state = ? AND proposer = 'baseline'", (p.relu_state,))
    assert crashed and all(r["status"] == "crash" for r in crashed), crashed
    assert p.status is not None, _fail(node, "the node is not running after the fallback")
    assert p.status["running"] is True and p.status["research"] == "running", p.status
    assert p.first_head == p.target_state, "the head after the fallback is not the target's train.py"
    chain = lineage(node, p.status["head"]["state"])  # it may have kept something since
    assert chain[-1] == p.target_state and p.relu_state not in chain, chain


def test_after_the_fallback_the_register_credits_the_node_not_the_peer(pex):
    """The target's baseline was measured by the node itself: the peer whose start state crashed
    (or whoever its Best named) must not be recorded as its author."""
    p, node = pex, pex.node
    assert p.started_ok, _fail(node, "the node did not start")
    best = p.first_best
    assert best is not None and best["state"] == p.target_state, best
    assert best["author"] == node.peer, \
        f"the register credits {best['author'][:16]} for the target's baseline the node measured itself " \
        f"(the hostile bootstrap peer is {p.bootstrap[:16]}, the Best it offered named {p.offered_author[:16]})"


def test_presence_never_makes_the_node_dial_a_third_party(pex):
    p = pex
    assert p.started_ok, _fail(p.node, "the node did not start")
    assert p.own_dials >= 1, "the node never dialled an author's own address: the dial path was not exercised"
    assert p.third_party_dials == 0, f"{p.third_party_dials} connections to a port named with another id or none"
    assert p.own_dials <= 2, \
        f"{p.own_dials} connections in {p.own_dial_window:.0f} s for one author (at most 2 per 60 s), " \
        f"at {p.own_dial_times} (seconds after its first Presence, port; py-libp2p's RetryConfig " \
        f"retries a failed dial 3 times, so one dial of one address is 4 connections)"


# ---- 9 -----------------------------------------------------------------------------------------------------


def test_join_with_a_crashing_baseline_says_error_and_exits_2(tmp_path):
    target = toy_copy(tmp_path, ACTIVATION="relu")
    home = tmp_path / "home"
    proc = swarm_node("join", "--target", str(target), *NODE_ARGS, "--max-experiments", "0", home=home,
                      timeout=120, check=False)
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert any(line.startswith("error:") for line in err.splitlines()), err[-3000:]
    node_frames = re.findall(r'File "[^"]*swarm_node[/\\][^"]*"', err + proc.stdout)
    assert not node_frames and "ExceptionGroup" not in err, f"a traceback of the node itself:\n{err[-3000:]}"
