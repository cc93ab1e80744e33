"""A hostile peer against one real node (the CLI in a subprocess) on 127.0.0.1.

The hostile peer publishes malformed, oversized, unsigned, forged and replayed messages, a false
claim and diffs with code outside the hyperparameter block. The node must stay up, reject each
with a logged reason, never run the forbidden code, never adopt the lie, ban the repeat offender
and still hear an honest peer afterwards.

One attack runs once per module (fixture `attack`); each test checks one promise against what it
left in the node's ledger, status, log and file system.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from conftest import swarm_node
from hostile_peer import LOCAL, HostilePeer
from swarm_node.messages import (
    PRESENCE_TOPIC,
    BenchKey,
    Claim,
    Discovery,
    Presence,
    SeedRun,
    state_hash,
)
from swarm_node.wire import MAX_MESSAGE_BYTES, encode
from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.network import ConnectError, SwarmNetwork
from swarm_node.research.hparams import write_block
from swarm_node.research.workspace import make_diff
from swarm_node.testing import NoSync, NodeProcess, peer_of, toy_target, until

NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--listen", "/ip4/127.0.0.1/tcp/0", "--presence-interval", "1",
             "--max-experiments", "0"]
ATTACK_SECONDS = 60.0  # the whole in-process attack, connects and waits included


@dataclass
class Attack:
    """What the attack did, and where to look for what the node made of it."""

    tmp: Path
    process: NodeProcess  # the node's `swarm-node join`, started by the fixture
    node: str = ""
    bench: BenchKey | None = None
    baseline: str = ""  # the node's head state before the attack
    hostile: str = ""  # the peer sending the signed lies and, later, five offenses (banned)
    unsigned: str = ""  # a second hostile peer: no signature, a forged one, a bad schema
    honest: str = ""  # a fresh peer that publishes a valid Presence at the end
    false_claim: Discovery | None = None
    false_claim_ids: list[str] = field(default_factory=list)  # hex message ids of its two encodings
    code_diff: Discovery | None = None  # code outside the block, parent known to the node
    sneaky_diff: Discovery | None = None  # code in '+++' lines, parent only the hostile peer has
    markers: list[Path] = field(default_factory=list)  # files the forbidden code would create
    code_sent_at: float = 0.0
    asked: list[str] = field(default_factory=list)  # states the node fetched from the hostile peer
    hostile_cut_off: bool = False  # the node hung up on the hostile peer
    hostile_redialed: bool = False  # and it could connect again (its messages are still dropped)
    still_connected: list[str] = field(default_factory=list)  # peers of the node, seen by the unsigned one
    alive_after: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def proc(self) -> subprocess.Popen:
        return self.process.popen

    @property
    def home(self) -> Path:
        return self.process.home

    def rows(self, sql: str, args=()) -> list[dict]:
        return self.process.rows(sql, args)  # [] before the node made its ledger

    def log(self) -> str:
        return self.process.log()

    def rejections(self, peer: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows("SELECT reason FROM rejections WHERE peer = ?", (peer,)):
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return counts


def _policy(counts: dict[str, int]) -> dict[str, int]:
    """Rejection counts with every `policy:<why>` folded into `policy`."""
    folded: dict[str, int] = {}
    for reason, n in counts.items():
        key = "policy" if reason.startswith("policy:") else reason
        folded[key] = folded.get(key, 0) + n
    return folded


HOSTILE_REASONS = {"policy": 2, "future-timestamp": 1, "false-claim": 1,
                   "undecodable": 1, "schema": 1, "oversized": 1, "author-mismatch": 2}
UNSIGNED_REASONS = {"unsigned": 1, "bad-signature": 1, "schema": 1}


def _mid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



SEEDS = range(5)  # the cpu tier's 3 decision and 2 confirmation seeds: a discovery must claim them all


def _discovery(author: str, bench: BenchKey, parent_src: str, new_src: str, val_bpb: float, description: str,
               hparams: dict) -> Discovery:
    """Claimed runs on every seed of the tier around `val_bpb` (their mean): it outranks any real head."""
    vals = [round(val_bpb + 0.001 * (s - 2), 6) for s in SEEDS]
    runs = [SeedRun(seed=s, val_bpb=v, test_bpb=round(v + 0.01, 6)) for s, v in zip(SEEDS, vals)]
    return Discovery(author=author, ts=time.time(), bench=bench, state=state_hash(new_src),
                     parent=state_hash(parent_src), diff=make_diff(parent_src, new_src),
                     val_bpb=statistics.fmean(vals), test_bpb=statistics.fmean(r.test_bpb for r in runs), runs=runs,
                     noise=0.001, description=description, hparams=hparams)


async def _run_attack(a: Attack, address: str, head_src: str) -> None:
    bench = a.bench
    research = bench.topic()
    topics = [PRESENCE_TOPIC, research]
    hostile, unsigned = HostilePeer(topics), HostilePeer(topics)
    honest = SwarmNetwork(create_new_key_pair(), topics=topics, listen=[LOCAL], sync_provider=NoSync())
    a.hostile, a.unsigned, a.honest = hostile.id, unsigned.id, honest.peer_id
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        for net in (hostile.net, unsigned.net, honest):
            await nursery.start(net.run)
        node = await hostile.connect(address, topics)
        await unsigned.connect(address, topics)
        assert node == a.node
        # the head as the node itself serves it over sync
        assert await hostile.net.request_state(node, a.baseline) == head_src
        a.timings["connected"] = trio.current_time() - t0

        # --- 1. well-formed, signed messages: a code diff, a future timestamp, a false claim ------
        #        (replayed and re-sent) and a disguised code diff
        a.markers = [a.tmp / "PWNED-policy", a.tmp / "PWNED-sneaky"]
        code_src = head_src + f'open({str(a.markers[0])!r}, "w").write("x")\n'
        a.code_diff = _discovery(hostile.id, bench, head_src, code_src, 0.5, "faster startup", {})
        kaiming_src = write_block(head_src, {"INIT": "kaiming"})
        a.false_claim = _discovery(hostile.id, bench, head_src, kaiming_src, 0.5, "INIT kaiming, huge win",
                                   {"INIT": "kaiming"})
        resent = a.false_claim.model_copy(update={"ts": a.false_claim.ts + 1.0})
        # '+++' starts an added line whose code begins with '++': valid Python, and a diff line
        # a line-by-line filter may take for a file header. Its parent is a state only we know.
        sneaky_parent = write_block(head_src, {"NORM": "rmsnorm"})
        sneaky_src = sneaky_parent + f'++open({str(a.markers[1])!r}, "w").write("x")\n'
        hostile.sources[state_hash(sneaky_parent)] = sneaky_parent
        a.sneaky_diff = _discovery(hostile.id, bench, sneaky_parent, sneaky_src, 0.6, "rmsnorm, tidied", {})
        future = Claim(author=hostile.id, ts=time.time() + 3600, bench=bench, state=a.false_claim.state,
                       parent=a.baseline, description="from the future")

        first = hostile.craft(research, encode(a.false_claim))
        a.false_claim_ids = [_mid(encode(a.false_claim)), _mid(encode(resent))]
        a.code_sent_at = time.time()
        await hostile.send(node, hostile.craft(research, encode(a.code_diff)),
                           hostile.craft(research, encode(future)),
                           first, first,  # replayed: the very same signed message twice
                           hostile.craft(research, encode(resent)),  # re-sent: same discovery, new bytes
                           hostile.craft(research, encode(a.sneaky_diff)))

        def adoptions_settled() -> bool:
            done = a.rows("SELECT origin FROM experiments WHERE origin = ? AND status != 'running'",
                          (a.false_claim.state,))
            policy = sum(n for r, n in a.rejections(hostile.id).items() if r.startswith("policy:"))
            return len(done) == 1 and policy == 2 and \
                {"false-claim", "future-timestamp"} <= set(a.rejections(hostile.id))
        await until(adoptions_settled, 25)
        a.timings["lies settled"] = trio.current_time() - t0

        # --- 2. protocol violations: five from `hostile` (a ban), three from `unsigned` ----------
        junk = b"\xc1" + random.Random(7).randbytes(200)  # 0xc1 is never valid msgpack
        other = peer_id_of(create_new_key_pair())
        await hostile.send(node, hostile.craft(research, junk),
                           hostile.craft(research, msgpack.packb([1, "discovery", 2])),
                           hostile.craft(research, b"\x00" * (MAX_MESSAGE_BYTES + 1)),
                           *[hostile.craft(research, encode(Claim(author=author, ts=time.time(), bench=bench,
                                                                  state=a.baseline, parent=a.baseline,
                                                                  description="not mine")))
                             for author in (node, other)])
        await unsigned.send(node, unsigned.craft(research, encode(future.model_copy(
                                update={"author": unsigned.id, "ts": time.time()})), signing="none"),
                            unsigned.craft(research, encode(future.model_copy(
                                update={"author": unsigned.id, "ts": time.time(), "description": "forged"})),
                                signing="forged"),
                            unsigned.craft(research, msgpack.packb({"v": 2, "type": "discovery",
                                                                    "author": unsigned.id})))
        a.hostile_cut_off = await until(lambda: node not in hostile.net.connected_peers(), 15)
        await until(lambda: _policy(a.rejections(unsigned.id)) == UNSIGNED_REASONS, 10)
        a.timings["offenses rejected"] = trio.current_time() - t0

        # the banned peer dials back in (the node lets the connection be) and says something valid
        try:
            await hostile.net.connect(address)
            a.hostile_redialed = True
        except ConnectError:
            pass
        comeback = Presence(author=hostile.id, ts=time.time(), bench=bench, role="init-norm", hardware={},
                            head=a.baseline, version="banned")
        await hostile.send(node, hostile.craft(PRESENCE_TOPIC, encode(comeback)))
        await hostile.net.publish(comeback)

        # --- 3. an honest newcomer still gets through ------------------------------------------
        await honest.connect(address)
        await honest.wait_for_mesh(node, PRESENCE_TOPIC, timeout=15)
        await honest.publish(Presence(author=honest.peer_id, ts=time.time(), bench=bench, role="init-norm",
                                      hardware={"cores": 2}, head=a.baseline, version="test"))
        await until(lambda: a.rows("SELECT peer FROM peers WHERE peer = ?", (honest.peer_id,)), 15)
        a.still_connected = unsigned.net.connected_peers()
        a.asked = list(hostile.asked)
        a.timings["honest heard"] = trio.current_time() - t0
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def attack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    target = toy_target(tmp / "toy_target")
    started = time.monotonic()
    node = NodeProcess(tmp / "home", tmp / "node.log", "--target", str(target), *NODE_ARGS)
    a = Attack(tmp=tmp, process=node)
    try:
        address = node.wait(node.printed_address, 60, "the node's multiaddr")
        a.node = peer_of(address)
        node.wait(lambda: a.rows("SELECT * FROM experiments WHERE status = 'baseline'"), 60, "the baseline")
        meta = {r["key"]: json.loads(r["value"]) for r in a.rows("SELECT * FROM meta")}
        a.bench = BenchKey(**meta["bench"])
        a.baseline = meta["head"]["state"]
        head_src = a.rows("SELECT train_py FROM states WHERE hash = ?", (a.baseline,))[0]["train_py"]
        a.timings["node ready"] = time.monotonic() - started

        async def bounded() -> None:
            with trio.fail_after(ATTACK_SECONDS):
                await _run_attack(a, address, head_src)

        trio.run(bounded)
        a.alive_after = node.alive()
        a.timings["attack"] = time.monotonic() - started - a.timings["node ready"]
        print("timings (s):", {k: round(v, 2) for k, v in a.timings.items()}, "banned peer redialed:", a.hostile_redialed)
        yield a
    finally:
        node.stop()


def _status(a: Attack) -> dict:
    return json.loads(swarm_node("status", "--json", "--home", str(a.home), home=a.home, timeout=30).stdout)


# ---- the node stays up and says what it rejected ------------------------------------------------


def test_the_node_stays_up_and_status_lists_every_reason(attack):
    assert attack.alive_after and attack.proc.poll() is None, attack.log()[-4000:]
    expected = set(_policy(HOSTILE_REASONS)) | set(UNSIGNED_REASONS)
    total = sum(HOSTILE_REASONS.values()) + sum(UNSIGNED_REASONS.values())
    deadline = time.monotonic() + 10  # status.json is rewritten every second: wait for a fresh one
    while True:
        status = _status(attack)
        complete = set(_policy(status["rejected"])) >= expected and sum(status["rejected"].values()) >= total
        if complete or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["running"] is True
    assert set(_policy(status["rejected"])) >= expected, status["rejected"]
    assert sum(status["rejected"].values()) == total, status["rejected"]


def test_each_hostile_message_is_rejected_with_its_reason_and_logged(attack):
    assert _policy(attack.rejections(attack.hostile)) == HOSTILE_REASONS
    assert _policy(attack.rejections(attack.unsigned)) == UNSIGNED_REASONS
    assert attack.rejections(attack.honest) == {}
    log = attack.log()
    logged = [line for line in log.splitlines() if "rejected a message" in line]
    for reason in set(HOSTILE_REASONS) | set(UNSIGNED_REASONS):
        needle = "reason=policy:" if reason == "policy" else f"reason={reason}"
        assert any(needle in line.replace("'", "").replace('"', "") for line in logged), (reason, logged)
    assert "Traceback" not in log, log[-4000:]


def test_the_repeat_offender_is_banned_and_the_others_stay(attack):
    # five offenses (undecodable, schema, oversized, 2 x author-mismatch) within 10 minutes
    assert attack.hostile_cut_off, "the node did not hang up on the peer with five offenses"
    banned = [line for line in attack.log().splitlines() if "network.banned" in line]
    assert len(banned) == 1 and attack.hostile in banned[0], banned
    assert attack.node in attack.still_connected  # three offenses: no ban
    # back again, with a valid Presence: still ignored (not recorded, not even counted as rejected)
    peer = attack.rows("SELECT * FROM peers WHERE peer = ?", (attack.hostile,))
    assert peer and peer[0]["version"] is None, peer  # the row is the failed verification's
    assert sum(attack.rejections(attack.hostile).values()) == sum(HOSTILE_REASONS.values())


# ---- the lie is measured, refused and counted against its author ---------------------------------


def test_a_false_claim_is_remeasured_refused_and_the_head_stays(attack):
    d = attack.false_claim
    rows = attack.rows("SELECT * FROM experiments WHERE origin = ?", (d.state,))
    assert len(rows) == 1, rows
    refused = rows[0]
    assert refused["status"] == "refused" and refused["proposer"] == "adoption"
    # one seed of the node's choosing re-ran and did not reproduce the value claimed for it
    match = re.search(r"seed (\d+): claimed ([\d.]+), re-ran ([\d.]+)", refused["reason"])
    assert match, refused["reason"]
    seed, claimed, rerun = int(match.group(1)), float(match.group(2)), float(match.group(3))
    assert claimed == pytest.approx({r.seed: r.val_bpb for r in d.runs}[seed], abs=1e-6), refused["reason"]
    runs = attack.rows("SELECT * FROM runs WHERE experiment_id = ?", (refused["id"],))
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["seed"] == seed  # really re-measured, once
    assert runs[0]["val_bpb"] > 2.0 and rerun == pytest.approx(runs[0]["val_bpb"], abs=1e-6), (runs, refused["reason"])
    peer = attack.rows("SELECT * FROM peers WHERE peer = ?", (attack.hostile,))
    assert peer and peer[0]["failed_verifications"] >= 1
    # never adopted: head, register and status all still name the baseline
    assert attack.rows("SELECT * FROM experiments WHERE status = 'adopted'") == []
    meta = attack.rows("SELECT value FROM meta WHERE key = 'head'")[0]["value"]
    assert json.loads(meta)["state"] == attack.baseline
    assert attack.rows("SELECT state FROM best WHERE tier = 'cpu'") == [{"state": attack.baseline}]
    status = _status(attack)
    assert status["head"]["state"] == attack.baseline and status["best"]["cpu"]["state"] == attack.baseline
    assert status["adoptions"] == 0


def test_replays_are_handled_once(attack):
    d = attack.false_claim
    assert len(attack.rows("SELECT * FROM discoveries WHERE state = ?", (d.state,))) == 1
    receipts = attack.rows("SELECT message_id FROM receipts WHERE state = ?", (d.state,))
    # the same bytes twice: one receipt; the same discovery in new bytes: a second receipt, no second effect
    assert sorted(r["message_id"] for r in receipts) == sorted(attack.false_claim_ids)
    received = [line for line in attack.log().splitlines() if "discovery received" in line and "INIT kaiming" in line]
    assert len(received) == 1, received
    assert len(attack.rows("SELECT * FROM experiments WHERE origin = ?", (d.state,))) == 1
    assert _policy(attack.rejections(attack.hostile))["future-timestamp"] == 1


# ---- code outside the hyperparameter block never runs -------------------------------------------


def test_code_outside_the_block_is_rejected_by_the_validator_and_never_runs(attack):
    d = attack.code_diff
    policy = {r: n for r, n in attack.rejections(attack.hostile).items() if r.startswith("policy:")}
    assert sum(policy.values()) == 2 and all("needs --policy code" in r for r in policy), policy  # and the next
    assert attack.rows("SELECT * FROM discoveries WHERE state = ?", (d.state,)) == []
    assert attack.rows("SELECT * FROM states WHERE hash = ?", (d.state,)) == []
    # a training run (the false claim's verification) happened after the diff arrived
    assert attack.rows("SELECT * FROM runs WHERE started_at > ?", (attack.code_sent_at,))
    time.sleep(2)
    for marker in attack.markers:
        assert not marker.exists(), f"forbidden code ran: {marker}"


def test_a_disguised_code_diff_is_rejected_by_the_validator_without_its_parent(attack):
    """An added line starting with '++' (so the diff line reads '+++...') is still code: the
    validator reads hunks by their '@@' headers and rejects it before forwarding, without
    needing the parent."""
    d = attack.sneaky_diff
    policy = {r: n for r, n in attack.rejections(attack.hostile).items() if r.startswith("policy:")}
    assert sum(policy.values()) == 2 and all("needs --policy code" in r for r in policy), policy
    assert attack.rows("SELECT * FROM discoveries WHERE state = ?", (d.state,)) == []
    assert attack.rows("SELECT * FROM experiments WHERE origin = ?", (d.state,)) == []
    assert not attack.markers[1].exists()


# ---- and the swarm still works -------------------------------------------------------------------


def test_an_honest_peer_still_gets_through(attack):
    rows = attack.rows("SELECT * FROM peers WHERE peer = ?", (attack.honest,))
    assert rows and rows[0]["tier"] == "cpu" and rows[0]["version"] == "test"
    assert attack.rejections(attack.honest) == {}


def test_ctrl_c_stops_the_node_cleanly(attack):
    """Last, since it stops the node: Ctrl-C is how `swarm-node join` is meant to be stopped."""
    assert attack.proc.poll() is None
    attack.proc.send_signal(signal.SIGINT)
    code = attack.proc.wait(timeout=30)
    tail = attack.log()[-3000:]
    assert "stopped: any experiment in flight was recorded as interrupted" in tail
    assert code == 0 and "Traceback" not in tail, tail
