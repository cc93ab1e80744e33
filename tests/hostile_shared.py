"""What the `shared` fixture of tests/test_hostile_attacks.py does to its node: the attacks that
do not interfere with each other, run in one trio.run, with what each sent and saw recorded in a
Shared for the tests to check (section numbers are those of the tests).
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from hostile_node import REFILL_S, NodeProc, discovery, seed_runs
from hostile_peer import LOCAL, HostilePeer, Identity
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
from swarm_node.p2p.network import SwarmNetwork
from swarm_node.testing import NoSync
from swarm_node.p2p.sync import SYNC_PROTOCOL, SyncError
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.workspace import apply_diff



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
    honest = SwarmNetwork(create_new_key_pair(), topics=topics, listen=[LOCAL], sync_provider=NoSync())
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
