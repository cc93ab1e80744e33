"""End-to-end attacks on real `swarm-node join` processes by real libp2p peers, on 127.0.0.1.

Each fixture starts the CLI in a subprocess on a copy of the toy target and attacks it from this
process with HostilePeers (tests/hostile_peer.py) that sign their messages like any peer, relay
messages signed by other fresh identities, and answer the sync protocol as they please. What
the node made of it is read back from its SQLite ledger, its log, `swarm-node status --json`,
the file system and the attacker's own view of the network.

    shared   one node (--max-experiments 0) under attacks that do not interfere: source-encoding
             code execution, rename/binary patches, unverified registers, false claims from one
             liar and five newcomers, idle sync streams, a discovery flood, a stale claim.
    squat    a fresh node whose whole reachable neighbourhood is claimed by 100+ identities.
    pex      a fresh node with a hostile bootstrap peer that offers a crashing "best", then
             Presence messages that try to make it dial a third party's port.
    crash    `swarm-node join` on a target whose baseline crashes.

Every fixture records what it needs and stops its node before the tests read it, so only one
node runs at a time on a small machine. Every wait is bounded in time and count.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from conftest import swarm_node
from hostile_peer import LOCAL, HostilePeer
from swarm_node.assets import load_config
from swarm_node.messages import (
    PRESENCE_TOPIC,
    BenchKey,
    Best,
    Claim,
    Discovery,
    Presence,
    SeedRun,
    state_hash,
)
from swarm_node.wire import encode
from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.network import SwarmNetwork
from swarm_node.p2p.sync import SYNC_PROTOCOL, SyncError
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.records import Head
from swarm_node.research.proposers.base import ProposalContext
from swarm_node.research.proposers.evolve import EvolveProposer
from swarm_node.research.proposers.heuristic import HeuristicProposer, grid_by_distance
from swarm_node.research.target import torch_version
from swarm_node.research.workspace import apply_diff, make_diff
from swarm_node.testing import NodeProcess, peer_of, toy_target

MAX_SECONDS = 5  # the wall limit of one run (--max-seconds); toy runs take well under a second
# --budget is training FLOPs (the toy ignores it); fixtures that need another wall limit pass their own
NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--max-seconds", str(MAX_SECONDS), "--listen", "/ip4/127.0.0.1/tcp/0",
             "--presence-interval", "1"]
REFILL_S = 4 * MAX_SECONDS + 60  # node.py/standing.py: one verification token back per 4 * max_seconds + 60 s
SEEDS = range(5)  # the cpu tier's 3 decision and 2 confirmation seeds: a discovery must claim them all
CPU_EXPLORE = load_config("roles")["roles"]["init-norm"]["explore"]  # the cpu tier's role


# ---- processes -----------------------------------------------------------------------------------


class NodeProc(NodeProcess):
    """One `swarm-node join` subprocess started by this module (stopped only by its own PID), its
    home at tmp/home and its log at tmp/node.log, with the ledger reads the tests need."""

    def __init__(self, tmp: Path, target: Path, *extra: str):
        super().__init__(tmp / "home", tmp / "node.log", "--target", str(target), *NODE_ARGS, *extra, name="node")
        self.tmp = tmp
        self.address = ""  # its multiaddr, once the fixture has read it
        self.peer = ""

    def rejections(self, *peers: str) -> list[dict]:
        marks = ",".join("?" * len(peers))
        return self.rows(f"SELECT peer, reason, at FROM rejections WHERE peer IN ({marks}) ORDER BY id", peers)

    def reasons(self, *peers: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejections(*peers):
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return counts

    def status(self) -> dict:
        return json.loads(swarm_node("status", "--json", "--home", str(self.home), home=self.home, timeout=30).stdout)


def start_node(tmp: Path, target: Path, *extra: str) -> NodeProc:
    return NodeProc(tmp, target, *extra)


def toy_copy(folder: Path, **changes) -> Path:
    """A copy of the toy target named toy_target (the bench's target name) with block values changed."""
    target = toy_target(folder / "toy_target")
    if changes:
        train = target / "train.py"
        train.write_text(write_block(train.read_text(), changes))
    return target


def bench_of(target: Path, tier: str = "cpu", budget: int = 1) -> BenchKey:
    """The bench key a node on this target copy uses (the toy's corpus is its own prepare.py; --budget 1
    is FLOPs; --tier cpu runs on the CPU; the torch version is the installed one's)."""
    corpus = hashlib.sha256((target / "prepare.py").read_bytes()).hexdigest()
    return BenchKey(target=target.name, corpus=corpus, tier=tier, budget=budget, unit="flops", device="cpu",
                    torch=torch_version())


def _fail(node: NodeProc, what: str) -> AssertionError:
    return AssertionError(f"{what}\n--- node log tail ---\n" + node.log()[-4000:])


# ---- crafting --------------------------------------------------------------------------------------


class Identity:
    """A fresh key: messages signed by it are relayed by a HostilePeer (GossipSub forwards others'
    messages, so the forwarder is not the author)."""

    def __init__(self):
        self.key_pair = create_new_key_pair()
        self.id = peer_id_of(self.key_pair)

    def sign(self, topic: str, data: bytes) -> rpc_pb2.Message:
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=ID.from_base58(self.id).to_bytes(),
                              seqno=os.urandom(8))
        msg.signature = self.key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = self.key_pair.public_key.serialize()
        return msg


class BestServer(HostilePeer):
    """A hostile peer whose sync `best` answer is chosen by the test (optionally after a delay)."""

    def __init__(self, topics, best: dict | None = None, sources: dict | None = None, delay: float = 0.0):
        super().__init__(topics, sources)
        self.entries = dict(best or {})
        self.delay = delay
        self.best_asked = 0

    def best(self):
        self.best_asked += 1
        if not self.delay:
            return dict(self.entries)

        async def later():
            await trio.sleep(self.delay)
            return dict(self.entries)
        return later()


async def send_batched(peer: HostilePeer, node: str, msgs: list, batch: int = 16, pause: float = 0.1) -> None:
    """Several messages per RPC: the sender's per-peer queue holds 32 RPCs, not 32 messages."""
    gossipsub = peer.net._gossipsub  # noqa: SLF001
    for i in range(0, len(msgs), batch):
        gossipsub.send_rpc(ID.from_base58(node), rpc_pb2.RPC(publish=msgs[i:i + batch]))
        await trio.sleep(pause)


def seed_runs(val_bpb: float) -> list[SeedRun]:
    """Claimed runs on every seed of the tier, spread around `val_bpb` (their mean)."""
    vals = [round(val_bpb * (1 + 0.002 * (s - 2)), 8) for s in SEEDS]
    return [SeedRun(seed=s, val_bpb=v, test_bpb=min(round(v + 0.01, 8), 16.0)) for s, v in zip(SEEDS, vals)]


def discovery(author: str, bench: BenchKey, parent_src: str, new_src: str, val_bpb: float, description: str,
              hparams: dict | None = None, ts: float | None = None) -> Discovery:
    runs = seed_runs(val_bpb)
    return Discovery(author=author, ts=ts or time.time(), bench=bench, state=state_hash(new_src),
                     parent=state_hash(parent_src), diff=make_diff(parent_src, new_src),
                     val_bpb=statistics.fmean(r.val_bpb for r in runs),
                     test_bpb=statistics.fmean(r.test_bpb for r in runs), runs=runs, noise=0.001,
                     description=description, hparams=hparams or {})


class _Nothing:
    def best(self) -> dict:
        return {}

    def state_source(self, state: str) -> None:
        return None


# ---- 1. the source-encoding trick --------------------------------------------------------------------

RAW = "# -*- coding: raw_unicode_escape -*-"
COMMENT = "# kaiming is better"  # a comment in the toy's hyperparameter block


def encoding_attack(base: str, marker: Path, variant: str) -> str:
    """`base` with a PEP 263 declaration Python honours (line 1 as Python counts lines) and a
    payload hidden in a comment of the hyperparameter block: under that encoding `\\u000a` (or
    utf-7's `+AAo-`) is a newline, so what a parse of the text sees as a comment is code."""
    payload = f'open({str(marker)!r}, "w").write("x")'
    in_block = {"bom": "\ufeff", "ff-in-block": "\x0c"}.get(variant, "")
    escaped = "+AAo-" if variant == "utf7" else "\u00e9" if variant == "latin1" else "\\u000a"
    assert COMMENT in base
    src = base.replace(COMMENT, COMMENT + in_block + escaped + payload, 1)
    cookie = {
        "lf": RAW + "\n",  # a plain extra first line
        "cr": RAW + "\r",  # no "\n": the same line to a split on "\n", a new line to Python
        "crlf": RAW + "\r\n",
        "ff": "\x0c" + RAW + "\n",  # PEP 263 allows a form feed before the '#'
        "vt": RAW + "\x0b\n", "fs": RAW + "\x1c\n", "nel": RAW + "\x85\n", "ls": RAW + "\u2028\n",
        "bom": RAW + "\n", "ff-in-block": RAW + "\n",
        "utf7": "# -*- coding: utf-7 -*-\n",
        "latin1": "# -*- coding: latin-1 -*-\n",  # not runnable as code: refused all the same
    }[variant]
    if variant == "utf7":  # '+' opens a base64 run in utf-7: escape the file's other '+'
        src = src.replace("+", "+-").replace("+-AAo-", "+AAo-")
    return cookie + src


ENCODING_VARIANTS = ("lf", "cr", "crlf", "ff", "vt", "fs", "nel", "ls", "bom", "ff-in-block", "utf7", "latin1")
NOT_RUNNABLE = {"latin1"}  # latin-1 turns nothing into a newline; every other variant runs the payload


def runs_payload(src: str, folder: Path, marker: Path) -> bool:
    """Run `src` as the runner does (`python train.py`, its own folder, a scrubbed env): True if
    it wrote `marker`. The marker is removed again."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_bytes(src.encode("utf-8"))
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "SWARM_SEED": "0", "SWARM_BUDGET_FLOPS": "1"}
    subprocess.run([sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, timeout=60)
    wrote = marker.exists()
    if wrote:
        marker.unlink()
    return wrote


# ---- the shared node -------------------------------------------------------------------------------------


@dataclass
class Shared:
    node: NodeProc
    bench: BenchKey | None = None
    baseline: str = ""
    head_src: str = ""
    timings: dict = field(default_factory=dict)
    # 1
    coder: str = ""
    live: dict = field(default_factory=dict)  # variant -> the payload ran under plain python
    encoded: dict = field(default_factory=dict)  # variant name -> Discovery sent
    markers: list = field(default_factory=list)
    # 2
    patcher: str = ""
    patches: dict = field(default_factory=dict)  # name -> Discovery
    patches_local: dict = field(default_factory=dict)  # name -> apply_diff error (in this process)
    patch_sent_at: float = 0.0
    best_after_patches: dict | None = None
    # 3
    relay: str = ""
    foreign: dict = field(default_factory=dict)  # name -> Discovery of another bench key
    presence_liar: str = ""
    # 4
    liar: str = ""
    lies: list = field(default_factory=list)  # the liar's discoveries, in sending order
    first_verified_at: float = 0.0
    liar_cut_off: bool = False
    newcomers: list = field(default_factory=list)  # (identity id, Discovery)
    # 6
    idle_opened: int = 0
    honest_best: dict | None = None
    honest_best_s: float | None = None
    honest_error: str = ""
    # 8
    flooder: str = ""
    flood_sent: int = 0
    flood_bytes: list = field(default_factory=list)
    stale_sent: bool = False
    # the end
    alive_after: bool = False
    status: dict | None = None
    final_best: dict | None = None


async def _connect(peer: HostilePeer, address: str, node: str, topics: list[str]) -> None:
    assert await peer.connect(address, topics) == node


async def _run_shared(s: Shared, address: str) -> None:
    n, bench, head_src, baseline = s.node, s.bench, s.head_src, s.baseline
    research = bench.topic()
    topics = [PRESENCE_TOPIC, research]
    liar, coder, patcher, relay, flooder = (HostilePeer(topics) for _ in range(5))
    honest = SwarmNetwork(create_new_key_pair(), topics=topics, listen=[LOCAL], sync_provider=_Nothing())
    s.liar, s.coder, s.patcher, s.relay, s.flooder = liar.id, coder.id, patcher.id, relay.id, flooder.id
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        for net in (liar.net, coder.net, patcher.net, relay.net, flooder.net, honest):
            await nursery.start(net.run)
        for peer in (liar, coder, patcher, relay, flooder):
            await _connect(peer, address, n.peer, topics)
        await honest.connect(address)
        s.timings["connected"] = trio.current_time() - t0

        # --- 4a. the liar's first false claims: one verification, then its budget is spent ----------
        def lie(lr: float) -> Discovery:
            return discovery(liar.id, bench, head_src, write_block(head_src, {"LEARNING_RATE": lr}), 0.5,
                             f"LEARNING_RATE {lr}: a huge win", {"LEARNING_RATE": lr})
        s.lies = [lie(0.002), lie(0.003)]
        await liar.send(n.peer, *(liar.craft(research, encode(d)) for d in s.lies))

        # --- 1. code execution through the source encoding -------------------------------------------
        attacker_parent = write_block(head_src, {"NORM": "rmsnorm"})
        coder.sources[state_hash(attacker_parent)] = attacker_parent
        messages = []
        for variant in ENCODING_VARIANTS:
            for parent, tag in ((head_src, ""), (attacker_parent, "@attacker-parent")):
                if tag and variant not in ("cr", "utf7", "nel"):
                    continue
                name = variant + tag
                marker = n.tmp / f"PWNED-{name}"
                src = encoding_attack(parent, marker, variant)
                s.markers.append(marker)
                d = discovery(coder.id, bench, parent, src, 0.5, f"tidy comments ({name})")
                s.encoded[name] = d
                messages.append(coder.craft(research, encode(d)))
        await coder.send(n.peer, *messages, pause=0.15)
        s.timings["encodings sent"] = trio.current_time() - t0

        # --- 2. rename and binary patches against a parent only the sender serves ------------------
        p_parent = write_block(head_src, {"TIE_EMBEDDINGS": True})
        patcher.sources[state_hash(p_parent)] = p_parent
        evil = p_parent + 'open("/tmp/never", "w")\n'
        body = "@@ -1,1 +1,1 @@\n-" + p_parent.split("\n")[0] + "\n+" + evil.split("\n")[0] + "\n"
        diffs = {
            "rename": "diff --git a/train.py b/pwned.py\nsimilarity index 95%\nrename from train.py\n"
                      "rename to pwned.py\n--- a/train.py\n+++ b/pwned.py\n" + body,
            "rename-after-header": "--- a/train.py\n+++ b/train.py\nrename from train.py\nrename to ../../pwned.py\n",
            "binary": "diff --git a/train.py b/train.py\nindex 0000000..1111111 100644\nGIT binary patch\n"
                      "literal 10\nRcmZ?wbhEHbHwFM9\n\nliteral 0\nHcmV?d00001\n\n",
            "binary-after-header": "--- a/train.py\n+++ b/train.py\nGIT binary patch\nliteral 10\nRcmZ?wbhEHbHwFM9\n\n",
        }
        for name, diff in diffs.items():
            s.patches_local[name] = apply_diff(p_parent, diff).error  # never raises, never applies
            d = Discovery(author=patcher.id, ts=time.time(), bench=bench, state=state_hash(evil + name),
                          parent=state_hash(p_parent), diff=diff, val_bpb=0.4, test_bpb=0.41, runs=seed_runs(0.4),
                          noise=0.001, description=f"tied embeddings ({name})", hparams={"TIE_EMBEDDINGS": True})
            s.patches[name] = d
        s.patch_sent_at = time.time()
        await patcher.send(n.peer, *(patcher.craft(research, encode(d)) for d in s.patches.values()), pause=0.15)

        # --- 3. other bench keys and a Presence that claim an unmeasured best --------------------
        gpu = bench.model_copy(update={"tier": "gpu-large"})
        slow = bench.model_copy(update={"budget": 2})
        a1, a2, a3 = Identity(), Identity(), Identity()
        s.presence_liar = a3.id
        s.foreign = {
            "gpu-large": discovery(a1.id, gpu, head_src, write_block(head_src, {"NORM": "rmsnorm"}), 0.0001,
                                   "rmsnorm on a big GPU", {"NORM": "rmsnorm"}),
            "budget-2": discovery(a2.id, slow, head_src, write_block(head_src, {"INIT": "kaiming"}), 0.0001,
                                  "kaiming with twice the budget", {"INIT": "kaiming"}),
        }
        fake = "f" * 64
        boast = Presence(author=a3.id, ts=time.time(), bench=bench, role="init-norm", hardware={}, head=fake,
                         head_val_bpb=0.0001, version="liar",
                         best={"cpu": Best(bench=bench, state=fake, val_bpb=0.0001, author=a3.id),
                               "gpu-large": Best(bench=gpu, state=fake, val_bpb=0.0001, author=a3.id)})
        await relay.send(n.peer, a1.sign(research, encode(s.foreign["gpu-large"])),
                         a2.sign(research, encode(s.foreign["budget-2"])), a3.sign(PRESENCE_TOPIC, encode(boast)))

        # --- 6. idle sync streams from one peer, then an honest request ----------------------------
        idle = []

        async def open_idle():
            try:
                with trio.fail_after(5):
                    host = patcher.net._host  # noqa: SLF001 - a raw stream, below the public API
                    idle.append(await host.new_stream(ID.from_base58(n.peer), [SYNC_PROTOCOL]))
            except Exception:  # noqa: BLE001 - a refused stream is the node's right
                pass
        async with trio.open_nursery() as openers:
            for _ in range(16):
                openers.start_soon(open_idle)
        s.idle_opened = len(idle)
        started = trio.current_time()
        try:
            with trio.fail_after(10):
                s.honest_best = await honest.request_best(n.peer)
            s.honest_best_s = trio.current_time() - started
        except (SyncError, trio.TooSlowError) as exc:
            s.honest_error = f"{type(exc).__name__}: {exc}"
        for stream in idle:
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:  # noqa: BLE001
                    pass
        s.timings["sync checked"] = trio.current_time() - t0

        # --- 8. a flood of big, schema-valid discoveries from one author; a claim from 1970 --------
        pad = {f"PAD_{j:02d}_" + "x" * 56: "y" * 256 for j in range(60)}  # names not in the block
        flood = []
        for i in range(75):  # valid changes (quota decides), then junk diffs (policy decides)
            lr = round(0.0002 + 0.0001 * i, 6)
            if lr == read_block(head_src)["LEARNING_RATE"]:
                lr = 0.04
            d = discovery(flooder.id, bench, head_src, write_block(head_src, {"LEARNING_RATE": lr}), 15.0,
                          "z" * 500, {"LEARNING_RATE": lr, **pad})
            flood.append(encode(d))
        rng = random.Random(3)
        for i in range(75):
            junk = "".join(rng.choice("abcdefghij +-@") for _ in range(29_000))
            d = Discovery(author=flooder.id, ts=time.time(), bench=bench, state=hashlib.sha256(b"j%d" % i).hexdigest(),
                          parent=baseline, diff=junk + "\n", val_bpb=15.0, runs=[SeedRun(seed=0, val_bpb=15.0)],
                          noise=0.001, description="z" * 500)
            flood.append(encode(d))
        s.flood_bytes = [len(b) for b in flood]
        await flooder.send(n.peer, *(flooder.craft(research, b) for b in flood), pause=0.04)
        s.flood_sent = len(flood)
        stale = Claim(author=patcher.id, ts=1.0, bench=bench, state=baseline, parent=baseline,
                      description="from 1970")
        await patcher.send(n.peer, patcher.craft(research, encode(stale)))
        s.stale_sent = True
        s.timings["flood sent"] = trio.current_time() - t0

        # --- settle 1, 2, 3, 8 and the liar's first verification ------------------------------------
        lies = [d.state for d in s.lies]
        marks = ",".join("?" * len(lies))
        def verified() -> list[dict]:
            return n.rows("SELECT started_at FROM experiments WHERE proposer = 'adoption'"
                          f" AND origin IN ({marks}) AND status != 'running'", lies)
        await n.until(lambda: verified() and "budget:verify" in n.reasons(liar.id), 30)
        policy_rows = lambda who: sum(r["reason"].startswith("policy:") for r in n.rejections(who))  # noqa: E731
        await n.until(lambda: policy_rows(coder.id) >= len(s.encoded), 20)
        await n.until(lambda: policy_rows(patcher.id) >= len(s.patches)
                    and "stale-timestamp" in n.reasons(patcher.id), 20)
        await n.until(lambda: len(n.rows("SELECT * FROM discoveries WHERE author IN (?, ?)", (a1.id, a2.id))) == 2, 10)
        last = -1
        for _ in range(40):  # the flood's outcome stops growing
            now = len(n.rejections(flooder.id))
            if now == last:
                break
            last = now
            await trio.sleep(0.5)
        rows = verified()
        if rows:
            s.first_verified_at = min(r["started_at"] for r in rows)
        s.timings["settled"] = trio.current_time() - t0

        # --- 4b. a third lie while the budget is spent; a fourth once one token has come back ------
        s.lies.append(lie(0.004))
        await liar.send(n.peer, liar.craft(research, encode(s.lies[-1])))
        if s.first_verified_at:
            await trio.sleep(max(0.0, s.first_verified_at + REFILL_S + 2 - time.time()))
        s.lies.append(lie(0.005))
        await liar.send(n.peer, liar.craft(research, encode(s.lies[-1])))
        s.liar_cut_off = await n.until(lambda: n.peer not in liar.net.connected_peers(), 30)
        s.timings["liar settled"] = trio.current_time() - t0

        # --- 4c. five newcomers, one false claim each ----------------------------------------------
        for k in range(5):
            who = Identity()
            lr = round(0.0015 + 0.001 * k, 6)
            d = discovery(who.id, bench, head_src, write_block(head_src, {"LEARNING_RATE": lr}), 0.5,
                          f"LEARNING_RATE {lr}", {"LEARNING_RATE": lr})
            s.newcomers.append((who.id, d))
            await relay.send(n.peer, who.sign(research, encode(d)))
        ids = [who for who, _ in s.newcomers]
        await n.until(lambda: len(n.rejections(*ids)) >= len(ids), 40)
        await trio.sleep(1.0)  # anything still pending would show up now
        s.timings["newcomers settled"] = trio.current_time() - t0

        # --- the node still answers -----------------------------------------------------------------
        try:
            with trio.fail_after(10):
                s.final_best = await honest.request_best(n.peer)
        except (SyncError, trio.TooSlowError):
            s.final_best = None
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    target = toy_copy(tmp)
    head_src = (target / "train.py").read_text()
    node = start_node(tmp, target, "--max-experiments", "0")
    s = Shared(node=node, head_src=head_src)
    started = time.monotonic()
    try:
        # is each encoding variant really code execution? (run as the runner would, before sending)
        for variant in ENCODING_VARIANTS:
            marker = tmp / f"PWNED-{variant}"
            s.live[variant] = runs_payload(encoding_attack(head_src, marker, variant), tmp / "live" / variant, marker)
        node.address = node.wait(node.printed_address, 60, "the node's multiaddr")
        node.peer = peer_of(node.address)
        node.wait(lambda: node.rows("SELECT * FROM experiments WHERE status = 'baseline'"), 60, "the baseline")
        s.bench = BenchKey(**node.meta("bench"))
        s.baseline = node.meta("head")["state"]
        assert s.baseline == state_hash(head_src), "the node's head is not the toy target's train.py"
        s.timings["node ready"] = time.monotonic() - started

        async def bounded():
            with trio.fail_after(180):  # the liar's refill wait alone is REFILL_S
                await _run_shared(s, node.address)
        trio.run(bounded)
        s.alive_after = node.alive()
        if s.alive_after:
            s.status = node.status()
        s.timings["total"] = time.monotonic() - started
        print("shared node timings (s):", {k: round(v, 1) for k, v in s.timings.items()})
        yield s
    finally:
        node.stop()


def _adoptions(node: NodeProc, states: list[str]) -> list[dict]:
    marks = ",".join("?" * len(states))
    return node.rows(f"SELECT * FROM experiments WHERE proposer = 'adoption' AND origin IN ({marks})", states)


# ---- 1 -----------------------------------------------------------------------------------------------


def test_source_encoding_code_execution_is_refused_and_never_runs(shared):
    """A PEP 263 declaration on line 1 (as Python counts lines, behind CR, FF, VT, FS, NEL, LS,
    a BOM, utf-7...) turns a comment in the hyperparameter block into code. Each variant is first
    shown to run its payload under plain python; sent as a signed Discovery (parent known to the
    node, or only to the attacker) each must be refused by the validator with a policy: reason."""
    s = shared
    dead = sorted(v for v, ran in s.live.items() if not ran and v not in NOT_RUNNABLE)
    assert not dead, f"these variants do not run their payload even under plain python (harness bug): {dead}"
    assert not any(s.live[v] for v in NOT_RUNNABLE)
    assert s.alive_after, s.node.log()[-4000:]
    policy = [r for r in s.node.rejections(s.coder) if r["reason"].startswith("policy:")]
    assert len(policy) == len(s.encoded), (
        f"{len(s.encoded)} encoding attacks sent, {len(policy)} refused with policy: ; the coder's rejections: "
        f"{s.node.reasons(s.coder)}")
    assert set(s.node.reasons(s.coder)) == {r["reason"] for r in policy}, s.node.reasons(s.coder)
    for name, d in s.encoded.items():
        for table, column in (("discoveries", "state"), ("states", "hash"), ("experiments", "state"),
                              ("experiments", "origin")):
            assert s.node.rows(f"SELECT 1 FROM {table} WHERE {column} = ?", (d.state,)) == [], (name, table)
    assert s.node.meta("head")["state"] == s.baseline
    time.sleep(1.0)  # the node is stopped: anything it started has finished
    ran = [m.name for m in s.markers if m.exists()]
    assert not ran, f"forbidden code ran on the node: {ran}"


# ---- 2 -----------------------------------------------------------------------------------------------


def test_rename_and_binary_patches_are_refused_and_the_node_carries_on(shared):
    s = shared
    for name, error in s.patches_local.items():
        assert error, f"apply_diff accepted the {name} patch"
    assert s.alive_after, s.node.log()[-4000:]
    reasons = [r["reason"] for r in s.node.rejections(s.patcher)]
    policy = [r for r in reasons if r.startswith("policy:")]
    assert len(policy) == len(s.patches), reasons
    assert any("rename" in r for r in policy) and any("binary" in r for r in policy), policy
    for d in s.patches.values():
        assert s.node.rows("SELECT 1 FROM discoveries WHERE state = ?", (d.state,)) == []
    # research goes on: the node still answers sync and verified a later claim after the patches
    assert s.final_best and s.bench.tier in s.final_best, s.final_best
    assert s.node.rows("SELECT id FROM experiments WHERE started_at > ?", (s.patch_sent_at,)), \
        "no experiment started after the patches arrived"
    log = s.node.log()
    assert "could not handle a message" not in log and "a discovery could not be handled" not in log
    assert "Traceback" not in log, log[-4000:]


# ---- 3 -----------------------------------------------------------------------------------------------


def test_the_best_register_holds_only_what_the_node_measured(shared):
    s = shared
    for name, d in s.foreign.items():  # they did arrive
        assert s.node.rows("SELECT 1 FROM discoveries WHERE state = ? AND tier = ?", (d.state, d.bench.tier)), name
    assert s.node.rows("SELECT 1 FROM peers WHERE peer = ?", (s.presence_liar,)), "the boasting Presence never arrived"
    assert s.status is not None
    head = s.node.meta("head")
    assert head["state"] == s.baseline
    best = s.status["best"]
    assert set(best) == {s.bench.tier}, best
    head_val = Head.from_meta(head).val_bpb  # the mean of the head's per-seed runs
    assert best[s.bench.tier]["state"] == head["state"] and best[s.bench.tier]["val_bpb"] == head_val, (best, head)
    assert best[s.bench.tier]["author"] == s.node.peer, best
    rows = s.node.rows("SELECT bench, tier, state, val_bpb FROM best")
    assert [(json.loads(r["bench"]), r["tier"], r["state"]) for r in rows] == \
        [(s.bench.model_dump(), s.bench.tier, s.baseline)], rows
    assert s.final_best is not None and set(s.final_best) == {s.bench.tier}
    assert s.final_best[s.bench.tier].state == s.baseline and s.final_best[s.bench.tier].val_bpb > 1.0


# ---- 4 -----------------------------------------------------------------------------------------------


def _refuted(node: NodeProc, row: dict, lies: list[Discovery]) -> bool:
    """An adoption experiment refused because the one seed it re-ran did not reproduce the claim:
    its reason names the seed, the claimed value (the discovery's for that seed) and a real re-run."""
    match = re.search(r"seed (\d+): claimed ([\d.]+), re-ran ([\d.]+)", row["reason"] or "")
    if row["status"] != "refused" or not match:
        return False
    seed, claimed, rerun = int(match.group(1)), float(match.group(2)), float(match.group(3))
    lie = next(d for d in lies if d.state == row["origin"])
    ran = node.rows("SELECT seed, status, val_bpb FROM runs WHERE experiment_id = ?", (row["id"],))
    return abs({r.seed: r.val_bpb for r in lie.runs}[seed] - claimed) < 1e-6 and rerun > 1.0 and \
        [(r["seed"], r["status"]) for r in ran] == [(seed, "ok")]


def test_false_claims_cost_at_most_the_verification_budget_and_get_the_liar_banned(shared):
    """Each lie claims runs on every seed of the tier, far better than the head: the node re-runs one
    seed of its choosing, which does not reproduce it. One verification, then the liar's budget is
    spent: a lie arriving now is recorded as budget:verify and waits (beyond two waiting ones,
    budget:pending drops it) until a token comes back, when a waiting lie is verified and refuted:
    two false claims, a ban."""
    s = shared
    runs = _adoptions(s.node, [d.state for d in s.lies])
    assert 1 <= len(runs) <= 2, \
        f"{len(runs)} verification runs for one liar's {len(s.lies)} claims (budget: 1, +1 after {REFILL_S} s)"
    assert all(_refuted(s.node, r, s.lies) for r in runs), runs
    order = [r["reason"] for r in s.node.rejections(s.liar)]
    # budget:verify is recorded when a lie arrives over budget (it may arrive while the first one's
    # verification still runs, so before its false-claim); the second false-claim comes after it
    assert order.count("false-claim") == 2, f"no waiting lie was verified once a token came back: {order}"
    last_false_claim = len(order) - 1 - order[::-1].index("false-claim")
    assert "budget:verify" in order and order.index("budget:verify") < last_false_claim, \
        f"the second verification did not wait for the budget: {order}"
    assert set(order) <= {"false-claim", "budget:verify", "budget:pending"}, order
    started = sorted(r["started_at"] for r in runs)
    assert len(started) == 2 and started[1] - started[0] >= REFILL_S - 2, \
        f"the second verification started {started[1] - started[0]:.1f} s after the first (a token takes {REFILL_S} s)"
    assert order.count("budget:verify") <= len(s.lies) - 1, f"a waiting lie was recorded more than once: {order}"
    assert s.liar_cut_off, "the node did not disconnect the peer with two false claims"
    assert any("banning a peer for repeated false claims" in line for line in s.node.log().splitlines())
    assert s.status is not None and s.liar in s.status["banned"], s.status and s.status["banned"]
    assert s.node.rows("SELECT 1 FROM experiments WHERE status = 'adopted'") == []


def test_newcomers_share_one_small_verification_budget(shared):
    s = shared
    ids = [who for who, _ in s.newcomers]
    runs = _adoptions(s.node, [d.state for _, d in s.newcomers])
    assert len(runs) <= 2, f"{len(runs)} verification runs for 5 fresh identities' false claims"
    reasons = s.node.reasons(*ids)
    assert sum(reasons.values()) == len(ids), reasons
    assert reasons.get("budget:verify", 0) >= len(ids) - 2, reasons
    assert reasons.get("false-claim", 0) == len(runs), (reasons, runs)
    assert all(_refuted(s.node, r, [d for _, d in s.newcomers]) for r in runs), runs
    # the ones over budget wait (not dropped) until the shared newcomers' budget refills
    assert s.status is not None and s.status["pending_adoptions"] >= reasons.get("budget:verify", 0), \
        (s.status and s.status["pending_adoptions"], reasons)


# ---- 6 -----------------------------------------------------------------------------------------------


def test_idle_sync_streams_from_one_peer_do_not_block_others(shared):
    s = shared
    assert s.idle_opened >= 3, f"only {s.idle_opened} of 16 idle sync streams opened: the attack did not happen"
    assert s.honest_best is not None, f"the honest sync request failed behind 16 idle streams: {s.honest_error}"
    assert s.bench.tier in s.honest_best
    assert s.honest_best_s < 2.0, f"the honest sync request took {s.honest_best_s:.2f} s"


# ---- 8 -----------------------------------------------------------------------------------------------


def test_a_flood_from_one_author_is_mostly_refused_and_stored_bounded(shared):
    s = shared
    assert s.flood_sent == 150 and min(s.flood_bytes) > 20_000, (s.flood_sent, min(s.flood_bytes))
    assert s.alive_after, s.node.log()[-4000:]
    reasons = s.node.reasons(s.flooder)
    quota = reasons.get("quota", 0)
    policy = sum(n for r, n in reasons.items() if r.startswith("policy:"))
    stored = s.node.rows("SELECT COUNT(*) AS n FROM discoveries WHERE author = ?", (s.flooder,))[0]["n"]
    assert stored <= 12, f"{stored} of the flood's discoveries stored ({reasons})"
    assert stored >= 1, "none of the flood's valid discoveries got through: the flood never reached the node"
    assert quota >= 50, reasons
    assert policy >= 10, reasons
    assert quota + policy >= 75, f"most of 150 should be refused with quota or policy: {reasons}"
    assert stored + sum(reasons.values()) <= s.flood_sent


def test_a_claim_from_1970_is_stale(shared):
    assert shared.stale_sent
    assert shared.node.reasons(shared.patcher).get("stale-timestamp") == 1, shared.node.reasons(shared.patcher)


# ---- 5. claim squatting -------------------------------------------------------------------------------------


def reachable_states(head_src: str) -> dict[str, str]:
    """Every state the heuristic and evolve proposers can propose from `head_src` with an empty
    history: single changes to any grid value or choice of the role's names, learning rates as
    evolve draws them (head * 2**u, two significant digits), and every pair of such changes."""
    space = load_config("search_space")
    head = read_block(head_src)
    names = [n for n in CPU_EXPLORE if n in head and n in space]
    values = {n: list(grid_by_distance(n, head[n], space)) for n in names}
    lr = head["LEARNING_RATE"]
    steps = 100_000
    draws = {min(max(float(f"{lr * 2 ** (-1 + 2 * i / steps):.2g}"), space["LEARNING_RATE"]["min"]),
                 space["LEARNING_RATE"]["max"]) for i in range(steps + 1)}
    values["LEARNING_RATE"] += sorted(v for v in draws if v not in values["LEARNING_RATE"] and v != lr)
    changes = [{n: v} for n in names for v in values[n]]
    changes += [{a: va, b: vb} for i, a in enumerate(names) for b in names[i + 1:]
                for va in values[a] for vb in values[b]]
    states = {}
    for c in changes:
        src = write_block(head_src, c)
        if src != head_src:
            states[state_hash(src)] = ", ".join(f"{k}={v!r}" for k, v in c.items())
    return states


def proposers_blocked(head_src: str, claimed: set[str], tries: int = 30) -> bool:
    """True if neither proposer finds anything from `head_src` while `claimed` is respected."""
    space = load_config("search_space")
    for seed in range(tries):
        ctx = ProposalContext(head_source=head_src, head_hparams=read_block(head_src), head_val_bpb=2.5,
                              role="init-norm", search_space=space, history=[], tier="cpu",
                              known_states=claimed | {state_hash(head_src)}, rng=random.Random(seed))
        for proposer in (HeuristicProposer(CPU_EXPLORE), EvolveProposer(CPU_EXPLORE)):
            if proposer.propose(ctx) is not None:
                return False
    return True


@dataclass
class Squat:
    node: NodeProc | None
    head_src: str = ""
    claimed: dict = field(default_factory=dict)
    identities: int = 0
    squatter: str = ""
    claims_done_at: float = 0.0
    max_live_claims: int = 0
    finished_in_time: bool = False
    experiments: list = field(default_factory=list)
    baseline_done_at: float = 0.0
    timings: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def squat(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("squat")
    # runs of 1 s (a baseline is 5 of them, an experiment 3 to 5) and a bootstrap peer slow to
    # answer `best`: time for every claim to arrive before the node's first proposal (that this
    # held is checked, not assumed)
    target = toy_copy(tmp, SLEEP_SECONDS=1.0)
    head_src = (target / "train.py").read_text()
    bench = bench_of(target)
    research = bench.topic()
    started = time.monotonic()
    states = reachable_states(head_src)
    claims, authors, ids = [], [], list(states)
    for i in range(0, len(ids), 4):  # the book keeps 4 live claims per peer: one identity per 4
        who = Identity()
        authors.append(who.id)
        for state in ids[i:i + 4]:
            claims.append(who.sign(research, encode(Claim(author=who.id, ts=time.time(), bench=bench,
                                                          state=state, parent=state_hash(head_src),
                                                          description=f"measuring {states[state]}"))))
    squatter = BestServer([PRESENCE_TOPIC, research], delay=4.5)
    sq = Squat(node=None, head_src=head_src, claimed=states, identities=len(authors), squatter=squatter.id)
    sq.timings["crafted"] = time.monotonic() - started

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(squatter.net.run)
            addr = squatter.net.listen_addrs()[0]
            sq.node = node = start_node(tmp, target, "--bootstrap", addr, "--max-experiments", "3",
                                        "--max-seconds", "5")
            await node.wait_async(lambda: squatter.net.connected_peers(), 30, "the node to dial its bootstrap peer")
            node.peer = squatter.net.connected_peers()[0]
            await squatter.net.wait_for_subscriber(node.peer, research, timeout=10)
            sq.timings["node connected"] = time.monotonic() - started
            await send_batched(squatter, node.peer, claims, batch=16, pause=0.15)
            sq.claims_done_at = time.time()
            sq.timings["claims sent"] = time.monotonic() - started

            def done() -> bool:
                try:
                    live = json.loads((node.home / "status.json").read_text()).get("live_claims", 0)
                    sq.max_live_claims = max(sq.max_live_claims, live)
                except (OSError, ValueError):
                    pass
                return "research finished" in node.log()
            sq.finished_in_time = await node.until(done, 60)
            sq.timings["finished"] = time.monotonic() - started
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        node = sq.node
        sq.experiments = node.rows("SELECT * FROM experiments WHERE proposer NOT IN ('baseline', 'adoption')"
                                   " ORDER BY id")
        base = node.rows("SELECT finished_at FROM experiments WHERE status = 'baseline'")
        sq.baseline_done_at = base[0]["finished_at"] if base else 0.0
        print("squat timings (s):", {k: round(v, 1) for k, v in sq.timings.items()},
              f"{len(claims)} claims from {len(authors)} identities")
        yield sq
    finally:
        if sq.node is not None:
            sq.node.stop()


def test_claim_squatting_never_idles_the_node(squat):
    q = squat
    # the attack is real: every state either proposer could try is claimed
    assert proposers_blocked(q.head_src, set(q.claimed)), "the claims leave the proposers something: no squat"
    assert q.node.reasons(q.squatter) == {}, f"claims were refused: {q.node.reasons(q.squatter)}"
    assert q.max_live_claims >= len(q.claimed), \
        f"the node held at most {q.max_live_claims} live claims of {len(q.claimed)} sent"
    finished = [e for e in q.experiments if e["status"] in ("keep", "discard", "crash")]
    assert finished, _fail(q.node, "no experiment ran under the claims")
    first = q.experiments[0]
    assert first["started_at"] > q.claims_done_at, \
        "harness race: the node started experimenting before every claim was sent (attack not exercised)"
    assert first["state"] in q.claimed, "the first experiment was not a claimed state: claims did not cover it"
    assert q.finished_in_time and len(finished) >= 3, \
        _fail(q.node, f"{len(finished)} experiments finished within 60 s of the claims: "
                      f"{[e['status'] for e in q.experiments]}")
    third = finished[2]["finished_at"]
    assert third - q.claims_done_at < 45, f"three experiments took {third - q.claims_done_at:.0f} s after the claims"
    idle = first["started_at"] - max(q.baseline_done_at, q.claims_done_at)
    assert idle < 10, f"the node idled {idle:.0f} s before its first experiment"


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
