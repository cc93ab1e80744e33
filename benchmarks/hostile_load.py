"""Hostile load: does a flood from many identities slow a node's research or its sync answers?

Two goals from the security issue, each measured against one real `swarm-node join` CLI process
on 127.0.0.1 (its own SWARM_NODE_HOME in a temp dir, --tier cpu --budget 1 --max-seconds 6, listening
on 127.0.0.1:0) on a copy of the toy research target (tests/toy_target: no torch) whose runs sleep
0.5 s and whose INIT="xavier" state does not hang (its `time.sleep(3600)` becomes `pass`), so a
different order of experiments never turns into a timeout.

The attacker is a child process of this script (so its CPU is not the prober's): HostilePeers
(tests/hostile_peer.py, imported by putting tests/ on sys.path) connect to the node and write
pubsub messages straight into its stream, each signed by one of many fresh ed25519 identities
(this script crafts them like HostilePeer.craft, with another key pair), batched into RPCs and
paced under py-libp2p's per-forwarder rate limit. The attacker's peers skip checking what the
node forwards to them (no signatures, validators or decoding), so that on a small machine the
attacker's own CPU takes as little as possible from the node's. The attacker reads the node's
head from the node's ledger (`meta` head, `states`): quicker than anything a remote attacker learns.

1. --part claims: "A claim flood of every reachable state leaves the node's experiment rate within
   20 % of an unflooded node's." The node runs --max-experiments N (default 8, 3 with --quick)
   twice, one after the other: alone, then while the attacker claims every state the node's
   proposers can reach from its current head (every single-name change over the search space's
   grid/choices for the names in the target's block, and every two-name combination of those),
   spread over 40 identities (at most a few claims each per round, under the per-author quota),
   re-claimed every 2 s and at once when the head changes. The attacker starts before the node and
   connects as soon as it prints its address, so its first claims (on the baseline's neighbours)
   arrive before the node's first own experiment (the lead is printed). Rate = own experiments (proposer not
   baseline/adoption, status keep/discard/crash) per minute, from the first one's started_at to
   the last one's finished_at in the ledger. Printed: both rates, their ratio (goal >= 0.8), the
   claims sent and what the node rejected, by reason (ledger `rejections`).

       .venv/bin/python benchmarks/hostile_load.py --part claims [--experiments 8] [--identities 40]

2. --part sync: "Honest sync latency during a 300-discovery flood stays under 100 ms p95." The
   node runs --max-experiments 0 (idle after its baseline). An honest SwarmNetwork peer (subscribed
   to the presence topic only, so the flood the node forwards does not load the prober) asks the
   node `request_best` every 50 ms: before the flood (attacker connected, quiet), during it
   (from the first discovery sent until the node has settled: no verification running, ledger
   counts and the number of waiting discoveries still for 1.5 s; a discovery whose author's
   verification budget is spent waits in the node's pending set until it refills, so a settled
   node may still hold some) and after. The flood: 300 schema-valid, policy-passing Discoveries
   (60 with --quick), 10 per identity (the discovery quota's burst), each a real LEARNING_RATE
   change of the node's head (values spread log-uniformly over [1e-5, 0.05]) with the head as
   parent and claimed runs on every seed of the tier (0-4), each 0.03 below the head's run on that
   seed, so each outranks the head and enters the adoption path (a verification re-runs one seed:
   a false claim). They go through 3 attacker connections at 50 messages/s each (--rate;
   py-libp2p penalises a forwarder above 100/s per topic), so 300 take about 2 s. Printed:
   p50/p95/max per phase (the during phase also split into while-sending and after the last
   send), CPU use of the node, attacker and prober processes per phase, discoveries
   accepted/rejected (by reason)/verified (adoption experiments), how many still wait, and the
   goal check on the during-flood p95 (< 100 ms, and no request failed).

       .venv/bin/python benchmarks/hostile_load.py --part sync [--discoveries 300]

Both parts: `--part both` (the default). `--quick`: 3 experiments and 60 discoveries, short
phases (the smoke test). Timing figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
for _path in (str(REPO), str(TESTS)):  # swarm_node, and tests/ for HostilePeer
    if _path not in sys.path:
        sys.path.insert(0, _path)

from swarm_node.testing import (NodeProcess, cpu_seconds, ledger_meta, ledger_rows, read_status,  # noqa: E402
                                start_node, stop_process, toy_target)

RUN_SLEEP_S = 0.5
# --budget is training FLOPs (the toy ignores it); --max-seconds the wall limit of one run (the old budget + margin)
NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--max-seconds", "6", "--listen", "/ip4/127.0.0.1/tcp/0"]
RATE_GOAL = 0.8  # flooded / unflooded experiments per minute
P95_GOAL_MS = 100.0
START_TIMEOUT_S = 120.0  # the node prints its address
BASELINE_TIMEOUT_S = 120.0  # the node has a head
EXPERIMENT_TIMEOUT_S = 30.0  # per experiment asked for, on top of a fixed minute
CHILD_READY_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 120.0
CLAIM_INTERVAL_S = 2.0
BATCH = 10  # messages per RPC
FORWARDERS = 3  # HostilePeer connections the attacker's messages come through
PER_FORWARDER_RATE = 50.0  # messages/s per connection (py-libp2p's limit: 100 per topic and forwarder)
OWN = ("keep", "discard", "crash")


# ---- the node, its ledger, its process --------------------------------------------------------------


def read_rows(home: Path, sql: str, args=()) -> list[dict]:
    """Rows of the node's ledger, read-only; [] while it does not exist or is busy."""
    return ledger_rows(home, sql, args, missing_ok=True)


def head_runs(head: dict | None) -> dict[int, tuple[float, float | None]]:
    """seed -> (val_bpb, test_bpb) of a ledger's `meta` head (the loop keeps the head's per-seed runs)."""
    return {int(seed): (run[0], run[1]) for seed, run in (head or {}).get("runs", {}).items()}


def head_val(head: dict | None) -> float | None:
    """The head's val_bpb: the mean over its seeds, as the node computes it."""
    runs = head_runs(head)
    return statistics.fmean(v for v, _ in runs.values()) if runs else None


def start(tmp: Path, target: Path, name: str, *args: str, python: list[str] = ()) -> NodeProcess:
    """`swarm-node join` as `name` (home tmp/name, log tmp/name.log), stopped by node.stop(): SIGINT, then SIGKILL."""
    return start_node(tmp, name, "--target", str(target), *NODE_ARGS, *args, python=python)


def suspicious_lines(node: NodeProcess) -> list[str]:
    """Log lines that look wrong: tracebacks, errors, exceptions, crashes of the node itself."""
    lines = node.log().splitlines()
    return [line for line in lines if re.search(r"Traceback|\[error|\[critical|exception", line, re.I)
            and "toy crash" not in line]


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def start_child(tmp: Path, kind: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """This script again, as the attacker (`--child claims|discoveries`); its output in a log file."""
    log_path = tmp / f"attacker-{kind}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", kind, *args],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return popen, log_path


def stop_child(popen: subprocess.Popen, stop_file: Path, timeout: float = 20.0) -> None:
    """Ask the attacker to stop (a file it polls), then SIGINT, then SIGKILL."""
    stop_file.touch()
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(popen, timeout=10)


def wait_file(path: Path, timeout: float, child: subprocess.Popen, log_path: Path) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if child.poll() is not None:
            raise RuntimeError(f"the attacker exited ({child.returncode}); its log tail:\n"
                               f"{tail(log_path.read_text(errors='replace'), 25)}")
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for the attacker's {path.name}")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def rejections(home: Path, peers: set[str], since: float = 0.0) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in read_rows(home, "SELECT peer, reason FROM rejections WHERE at >= ?", (since,)):
        if r["peer"] in peers:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def all_rejections(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in read_rows(home, "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason"):
        counts[r["reason"]] = r["n"]
    return counts


# ---- what the attacker claims: every state the node's proposers reach from a head ---------------------


def reachable_states(head_src: str, space: dict) -> list[tuple[dict, str]]:
    """(changes, train.py) for every single-name change over the search space's grid/choices of the
    names in the block, then every two-name combination of those; each distinct, none the head."""
    from swarm_node.research.hparams import read_block, write_block
    from swarm_node.research.proposers.heuristic import grid_by_distance

    block = read_block(head_src)
    options = {name: grid_by_distance(name, value, space) for name, value in block.items() if name in space}
    options = {name: values for name, values in options.items() if values}
    changes: list[dict] = [{name: v} for name, values in options.items() for v in values]
    for a, b in itertools.combinations(options, 2):
        changes += [{a: va, b: vb} for va in options[a] for vb in options[b]]
    out, seen = [], {head_src}
    for change in changes:
        try:
            source = write_block(head_src, change)
        except (KeyError, TypeError, ValueError):
            continue
        if source not in seen:
            seen.add(source)
            out.append((change, source))
    return out


# ---- the attacker (child process) ----------------------------------------------------------------------


def craft_as(key_pair, topic: str, data: bytes):
    """A signed pubsub message from the identity `key_pair`, exactly as HostilePeer.craft signs its own."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

    msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=ID.from_pubkey(key_pair.public_key).to_bytes(),
                          seqno=os.urandom(8))
    msg.signature = key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = key_pair.public_key.serialize()
    return msg


async def send_paced(hostile, peer: str, messages: list, rate: float) -> None:
    """Write `messages` on `hostile`'s pubsub stream to `peer`, BATCH per RPC, at most `rate` per second
    (py-libp2p drops RPCs beyond its 32-deep per-peer queue and penalises a forwarder over 100/s)."""
    import trio
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2

    gossipsub = hostile.net._gossipsub  # noqa: SLF001 - below the public API on purpose, as HostilePeer.send
    to = ID.from_base58(peer)
    for i in range(0, len(messages), BATCH):
        chunk = messages[i:i + BATCH]
        gossipsub.send_rpc(to, rpc_pb2.RPC(publish=chunk))
        await trio.sleep(len(chunk) / rate)


class _Attack:
    """What both floods share: identities, forwarders connected to the node, the node's head."""

    def __init__(self, args):
        from libp2p.crypto.ed25519 import create_new_key_pair

        from swarm_node.p2p.identity import peer_id_of

        self.args = args
        self.home = Path(args.home)
        self.out = Path(args.out)
        self.keys = [create_new_key_pair() for _ in range(args.identities)]
        self.ids = [peer_id_of(k) for k in self.keys]
        self.forwarders: list = []
        self.node = ""

    def stop_requested(self) -> bool:
        return (self.out / "stop").exists()

    async def connect(self, nursery) -> None:
        import trio

        from hostile_peer import HostilePeer
        from swarm_node.messages import PRESENCE_TOPIC, BenchKey

        with trio.fail_after(CHILD_READY_TIMEOUT_S):
            while (bench := ledger_meta(self.home, "bench")) is None:
                await trio.sleep(0.1)
        self.bench = BenchKey(**bench)
        self.topic = self.bench.topic()
        topics = [PRESENCE_TOPIC, self.topic]
        self.forwarders = [HostilePeer(topics) for _ in range(self.args.forwarders)]
        for hostile in self.forwarders:
            await nursery.start(hostile.net.run)
            self.deafen(hostile)
        address = self.args.address
        with trio.fail_after(CHILD_READY_TIMEOUT_S):  # started before the node printed it: main writes it here
            while address is None:
                await trio.sleep(0.02)
                if (self.out / "address").exists():
                    address = (self.out / "address").read_text().strip() or None
        for hostile in self.forwarders:  # no wait for the mesh: the node takes messages from any peer
            self.node = await hostile.net.connect(address)
            await hostile.net.wait_for_subscriber(self.node, self.topic, timeout=30)

    def deafen(self, hostile) -> None:
        """Let the attacker's peers take what the node forwards to them without checking it (no signature
        check, no validator, no decoding): on a 2-core machine the attacker's CPU is the node's too."""
        pubsub = hostile.net._pubsub  # noqa: SLF001
        try:
            pubsub.strict_signing = False
            pubsub.remove_topic_validator(self.topic)
            pubsub._on_message = lambda msg: None  # noqa: SLF001
        except AttributeError as error:  # py-libp2p or SwarmNetwork changed: the attacker stays as it is
            print(f"could not deafen the attacker's peer: {error}", file=sys.stderr)

    async def head(self) -> tuple[str, str, dict] | None:
        """(state, train.py, per-seed runs) of the node's head: its ledger, else the target's train.py
        (no runs yet)."""
        head = ledger_meta(self.home, "head")
        if head is None:
            from swarm_node.messages import state_hash
            source = Path(self.args.target_train).read_text()
            return state_hash(source), source, {}
        rows = read_rows(self.home, "SELECT train_py FROM states WHERE hash = ?", (head["state"],))
        source = rows[0]["train_py"] if rows else await self.forwarders[0].net.request_state(self.node, head["state"])
        return (head["state"], source, head_runs(head)) if source else None


async def child_claims(args) -> None:
    """Claim every reachable state of the node's head, from many identities, every CLAIM_INTERVAL_S and
    at once when the head changes, until told to stop. Writes ready.json, then result.json."""
    import trio

    from swarm_node.assets import load_config
    from swarm_node.messages import Claim, state_hash
    from swarm_node.wire import encode

    attack = _Attack(args)
    space = load_config("search_space")
    sent = rounds = heads = 0
    per_identity_max = 0
    states_per_round: list[int] = []
    t_first = None
    async with trio.open_nursery() as nursery:
        await attack.connect(nursery)
        write_json(attack.out / "ready.json", {"ids": attack.ids, "forwarders": [h.id for h in attack.forwarders],
                                               "node": attack.node})
        last_state, last_round = None, -math.inf
        deadline = trio.current_time() + args.max_seconds
        while not attack.stop_requested() and trio.current_time() < deadline:
            head = await attack.head()
            if head is None or (head[0] == last_state and trio.current_time() - last_round < CLAIM_INTERVAL_S):
                await trio.sleep(0.1)
                continue
            state, source, _ = head
            heads += state != last_state
            last_state, last_round = state, trio.current_time()
            states = reachable_states(source, space)
            per_round: dict[int, int] = {}
            batches: list[list] = [[] for _ in attack.forwarders]
            now = time.time()
            for i, (changes, new_src) in enumerate(states):
                who = i % len(attack.keys)
                per_round[who] = per_round.get(who, 0) + 1
                claim = Claim(author=attack.ids[who], ts=now, bench=attack.bench, state=state_hash(new_src),
                              parent=state, description="claimed: " + ", ".join(f"{k}={v!r}" for k, v in changes.items()))
                batches[i % len(batches)].append(craft_as(attack.keys[who], attack.topic, encode(claim)))
            per_identity_max = max(per_identity_max, max(per_round.values(), default=0))
            t_first = t_first or time.time()
            async with trio.open_nursery() as senders:
                for hostile, batch in zip(attack.forwarders, batches):
                    senders.start_soon(send_paced, hostile, attack.node, batch, args.rate)
            sent += len(states)
            rounds += 1
            states_per_round.append(len(states))
        write_json(attack.out / "result.json", {
            "sent": sent, "rounds": rounds, "heads": heads, "identities": len(attack.ids),
            "forwarders": len(attack.forwarders), "per_identity_per_round_max": per_identity_max,
            "states_per_round": states_per_round, "t_first": t_first,
            "still_connected": attack.node in attack.forwarders[0].net.connected_peers()})
        nursery.cancel_scope.cancel()


def flood_values(count: int, current: float) -> list[float]:
    """`count` distinct LEARNING_RATE values, log-uniform over [1e-5, 0.05], none equal to `current`."""
    lo, hi = math.log(1e-5), math.log(0.05)
    values: list[float] = []
    n = count
    while len(values) < count:
        values = []
        for i in range(n):
            v = float(f"{math.exp(lo + (hi - lo) * i / max(1, n - 1)):.4g}")
            if v != current and v not in values and 1e-5 <= v <= 0.05:
                values.append(v)
        n += 1
    return values[:count]


async def child_discoveries(args) -> None:
    """Connect, craft `args.discoveries` Discoveries (10 per identity), write ready.json, wait for
    `go`, send them, write sent.json, stay connected until told to stop."""
    import trio

    from swarm_node.messages import Discovery, SeedRun, state_hash
    from swarm_node.wire import encode
    from swarm_node.research.hparams import read_block, write_block
    from swarm_node.research.workspace import make_diff

    attack = _Attack(args)
    async with trio.open_nursery() as nursery:
        await attack.connect(nursery)
        with trio.fail_after(CHILD_READY_TIMEOUT_S):
            while (head := await attack.head()) is None or not head[2]:
                await trio.sleep(0.1)
        state, source, runs = head
        val = statistics.fmean(v for v, _ in runs.values())
        current = read_block(source)["LEARNING_RATE"]
        # every seed the head is known on, each 0.03 better: the mean beats the head's, so it is verified
        claimed_runs = [SeedRun(seed=seed, val_bpb=max(0.01, v - 0.03), test_bpb=max(0.01, (t or v) - 0.02))
                        for seed, (v, t) in sorted(runs.items())]
        claimed = statistics.fmean(r.val_bpb for r in claimed_runs)
        per_forwarder: list[list] = [[] for _ in attack.forwarders]
        states = []
        for i, lr in enumerate(flood_values(args.discoveries, current)):
            who = i // 10 % len(attack.keys)
            new_src = write_block(source, {"LEARNING_RATE": lr})
            d = Discovery(author=attack.ids[who], ts=time.time(), bench=attack.bench, state=state_hash(new_src),
                          parent=state, diff=make_diff(source, new_src), val_bpb=claimed,
                          test_bpb=statistics.fmean(r.test_bpb for r in claimed_runs), runs=claimed_runs,
                          noise=0.001, description=f"LEARNING_RATE {current!r} -> {lr!r}",
                          hparams={"LEARNING_RATE": lr})
            states.append(d.state)
            per_forwarder[who % len(per_forwarder)].append(craft_as(attack.keys[who], attack.topic, encode(d)))
        write_json(attack.out / "ready.json", {"ids": attack.ids, "forwarders": [h.id for h in attack.forwarders],
                                               "node": attack.node, "states": states, "head": state,
                                               "head_val_bpb": val, "claimed_val_bpb": claimed,
                                               "seeds": sorted(runs)})
        with trio.fail_after(args.max_seconds):
            while not (attack.out / "go").exists():
                await trio.sleep(0.02)
        t_first = time.time()
        async with trio.open_nursery() as senders:
            for hostile, batch in zip(attack.forwarders, per_forwarder):
                senders.start_soon(send_paced, hostile, attack.node, batch, args.rate)
        write_json(attack.out / "sent.json", {"t_first": t_first, "t_last": time.time(),
                                              "sent": sum(map(len, per_forwarder))})
        with trio.move_on_after(args.max_seconds):
            while not attack.stop_requested():
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()


def run_child(args) -> int:
    import trio

    from swarm_node.logs import configure
    configure(level="warning")  # to stderr: the attacker's own log file
    trio.run(child_claims if args.child == "claims" else child_discoveries, args)
    return 0


# ---- part 1: claims -----------------------------------------------------------------------------------


def experiment_rate(node: NodeProcess) -> dict:
    rows = node.rows("SELECT * FROM experiments WHERE proposer NOT IN ('baseline', 'adoption') ORDER BY id")
    own = [r for r in rows if r["status"] in OWN and r["finished_at"] is not None]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out = {"n": len(own), "counts": counts, "rate": None, "span": None}
    if own:
        span = max(r["finished_at"] for r in own) - min(r["started_at"] for r in own)
        out["span"] = span
        out["rate"] = len(own) / span * 60 if span > 0 else None
        out["mean_s"] = statistics.fmean(r["finished_at"] - r["started_at"] for r in own)
        out["states"] = [r["state"] for r in own]
        out["descriptions"] = [r["description"] for r in own]
    out["adoptions"] = len(node.rows("SELECT id FROM experiments WHERE proposer = 'adoption'"))
    head = ledger_meta(node.home, "head") or {}
    out["head_val_bpb"] = head_val(head)
    out["proposers"] = {}
    for r in rows:
        if r["status"] in OWN:
            out["proposers"][r["proposer"]] = out["proposers"].get(r["proposer"], 0) + 1
    return out


def claims_run(tmp: Path, target: Path, n: int, flooded: bool, args) -> dict:
    name = "flooded" if flooded else "unflooded"
    child = None
    out = tmp / "attack-claims"
    if flooded:  # the attacker starts first (imports, identities) and connects once the node prints its address
        out.mkdir()
        child, child_log = start_child(tmp, "claims", [
            "--home", str(tmp / name), "--out", str(out),
            "--identities", str(args.identities), "--forwarders", str(args.forwarders), "--rate", str(args.rate),
            "--target-train", str(target / "train.py"), "--max-seconds", str(60 + EXPERIMENT_TIMEOUT_S * n)])
    node = start(tmp, target, name, "--max-experiments", str(n))
    result: dict = {"name": name}
    live_claims_max = 0
    try:
        address = node.wait(node.printed_address, START_TIMEOUT_S, f"{name}'s address", poll=0.02)
        if flooded:
            tmp_address = out / "address.tmp"
            tmp_address.write_text(address)
            tmp_address.replace(out / "address")
            ready = wait_file(out / "ready.json", CHILD_READY_TIMEOUT_S, child, child_log)
            result["attacker_ready_s"] = time.monotonic() - node.started
        deadline = time.monotonic() + 60 + EXPERIMENT_TIMEOUT_S * n
        while "research finished" not in node.log():
            if node.popen.poll() is not None:
                raise RuntimeError(f"{name} exited ({node.popen.returncode}); log tail:\n{tail(node.log(), 25)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not finish {n} experiments in time; log tail:\n{tail(node.log(), 25)}")
            live_claims_max = max(live_claims_max, read_status(node.home).get("live_claims", 0) or 0)
            time.sleep(0.25)
        result.update(experiment_rate(node))
        first = node.rows("SELECT MIN(started_at) AS t FROM experiments WHERE proposer NOT IN ('baseline', 'adoption')")
        result["first_experiment_at"] = first[0]["t"] if first else None
        result["live_claims_max"] = live_claims_max
        if flooded:
            stop_child(child, out / "stop")
            child = None
            attack = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
            result["attack"] = attack
            if attack.get("t_first") and result["first_experiment_at"]:
                result["claims_lead_s"] = result["first_experiment_at"] - attack["t_first"]
            result["rejected"] = rejections(node.home, set(ready["ids"]) | set(ready["forwarders"]))
            result["banned"] = read_status(node.home).get("banned", [])
        result["all_rejected"] = all_rejections(node.home)
        result["alive"] = node.popen.poll() is None
    finally:
        if child is not None:
            stop_child(child, tmp / "attack-claims" / "stop")
        node.stop()
        result["exit"] = node.popen.returncode
        result["troubles"] = suspicious_lines(node)
        result["stopped_cleanly"] = "stopped: any experiment in flight was recorded as interrupted" in node.log()
    return result


def part_claims(tmp: Path, target: Path, args) -> bool:
    n = args.experiments
    print(f"claims: a node runs {n} experiments (toy runs of {RUN_SLEEP_S} s, --budget 1) alone, then under a "
          f"claim flood from {args.identities} identities through {args.forwarders} connections", flush=True)
    runs = {}
    for flooded in (False, True):
        t = time.monotonic()
        r = claims_run(tmp, target, n, flooded, args)
        runs[r["name"]] = r
        rate = f"{r['rate']:.1f} experiments/min" if r.get("rate") else "no rate"
        print(f"claims: {r['name']}: {r['n']} own experiments {r['counts']} in {r['span'] or 0:.1f} s from the first "
              f"start to the last finish ({rate}, mean {r.get('mean_s', 0):.2f} s each); adoption experiments "
              f"{r['adoptions']}; proposers {r['proposers']}; final head val_bpb {r['head_val_bpb']}; live claims at most "
              f"{r['live_claims_max']}; run took {time.monotonic() - t:.1f} s",
              flush=True)
        if r["name"] == "flooded":
            a = r.get("attack", {})
            per_round = a.get("states_per_round", [])
            print(f"claims: the attacker sent {a.get('sent', '?')} claims in {a.get('rounds', '?')} rounds over "
                  f"{a.get('heads', '?')} heads (states per round {min(per_round, default=0)}-{max(per_round, default=0)}, "
                  f"at most {a.get('per_identity_per_round_max', '?')} per identity per round, "
                  f"{a.get('identities', '?')} identities); attacker ready {r.get('attacker_ready_s', 0):.1f} s after "
                  f"the node started, first claims {r.get('claims_lead_s', float('nan')):.2f} s before the node's first "
                  f"own experiment started; still connected at the end: {a.get('still_connected')}")
            print(f"claims: the node rejected from the attacker, by reason: {r['rejected'] or 'nothing'}; "
                  f"banned: {len(r['banned'])}")
        if r["troubles"] or not r["stopped_cleanly"] or r["exit"] not in (0, None):
            print(f"claims: {r['name']}: exit {r['exit']}, stopped cleanly: {r['stopped_cleanly']}, "
                  f"{len(r['troubles'])} suspicious log lines: {r['troubles'][:5]}")
    base, flood = runs["unflooded"], runs["flooded"]
    same = base.get("states") == flood.get("states")
    print(f"claims: the two runs measured {'the same states in the same order' if same else 'DIFFERENT states'}")
    if not same:
        print(f"  unflooded: {base.get('descriptions')}\n  flooded:   {flood.get('descriptions')}")
    if base.get("rate") and flood.get("rate"):
        ratio = flood["rate"] / base["rate"]
        met = ratio >= RATE_GOAL and flood["n"] >= n
        print(f"claims: flooded/unflooded experiment rate = {flood['rate']:.1f} / {base['rate']:.1f} = {ratio:.2f}")
        print(f"goal claim flood: experiment rate within 20 % of an unflooded node's (ratio >= {RATE_GOAL}): "
              f"{'met' if met else 'NOT met'}")
        return met
    print("goal claim flood: experiment rate within 20 % of an unflooded node's: NOT met (no rate measured)")
    return False


# ---- part 2: sync latency during a discovery flood ------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def phase_line(label: str, samples: list[tuple[float, float, str | None]]) -> str:
    ok = [ms for _, ms, error in samples if error is None]
    failed = [error for _, _, error in samples if error is not None]
    if not ok:
        return f"sync: {label}: no answered requests ({len(failed)} failed: {failed[:3]})"
    fail = f", {len(failed)} failed ({sorted(set(failed))})" if failed else ""
    return (f"sync: {label}: request_best p50 {percentile(ok, 50):.1f} ms, p95 {percentile(ok, 95):.1f} ms, "
            f"max {max(ok):.1f} ms (n={len(ok)}{fail})")


def settled_fingerprint(home: Path) -> tuple | None:
    """What changes while the node still works on the flood; None while a verification is running.

    Discoveries whose author's verification budget is spent wait in the node's pending set until it
    refills (minutes), so a settled node may still hold some: their number is part of the fingerprint."""
    if read_rows(home, "SELECT id FROM experiments WHERE status = 'running'"):
        return None
    rows = read_rows(home, "SELECT (SELECT COUNT(*) FROM rejections) AS a, (SELECT COUNT(*) FROM discoveries) AS b, "
                           "(SELECT COUNT(*) FROM receipts) AS c, (SELECT COUNT(*) FROM experiments) AS d")
    if not rows:
        return None
    return (*rows[0].values(), read_status(home).get("pending_adoptions"))


async def sync_probe(tmp: Path, node: NodeProcess, address: str, target_train: Path, args) -> dict:
    import trio
    from libp2p.crypto.ed25519 import create_new_key_pair

    from swarm_node.messages import PRESENCE_TOPIC
    from swarm_node.p2p.network import SwarmNetwork
    from swarm_node.p2p.sync import SyncError

    class Nothing:
        def best(self) -> dict:
            return {}

        def state_source(self, state: str) -> None:
            return None

    honest = SwarmNetwork(create_new_key_pair(), topics=[PRESENCE_TOPIC], listen=["/ip4/127.0.0.1/tcp/0"],
                          sync_provider=Nothing())
    samples: list[tuple[float, float, str | None]] = []  # (wall time sent, ms, error)
    marks: dict = {}
    out = tmp / "attack-discoveries"
    out.mkdir()
    child = None

    def mark(name: str) -> None:
        marks[name] = time.time()
        marks.setdefault("cpu", {})[name] = {"node": cpu_seconds(node.popen.pid), "prober": time.process_time(),
                                             "attacker": cpu_seconds(child.pid) if child else 0.0}

    async def probe(peer: str) -> None:
        while True:
            sent = time.time()
            t0 = trio.current_time()
            error = None
            try:
                await honest.request_best(peer)
            except SyncError as exc:
                error = exc.reason
            samples.append((sent, (trio.current_time() - t0) * 1000, error))
            await trio.sleep(0.05)

    async def wait_settled() -> None:
        last, stable_since = None, None
        while True:
            fingerprint = await trio.to_thread.run_sync(settled_fingerprint, node.home)
            now = trio.current_time()
            if fingerprint is None or fingerprint != last:
                last, stable_since = fingerprint, now
            elif now - stable_since >= 1.5:
                return
            await trio.sleep(0.25)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(honest.run)
            peer = await honest.connect(address)
            child, child_log = start_child(tmp, "discoveries", [
                "--address", address, "--home", str(node.home), "--out", str(out),
                "--identities", str(math.ceil(args.discoveries / 10)), "--forwarders", str(args.forwarders),
                "--rate", str(args.rate),
                "--discoveries", str(args.discoveries), "--target-train", str(target_train),
                "--max-seconds", str(SETTLE_TIMEOUT_S + 120)])
            with trio.fail_after(CHILD_READY_TIMEOUT_S):
                while not (out / "ready.json").exists():
                    if child.poll() is not None:
                        raise RuntimeError(f"the attacker exited ({child.returncode}); log tail:\n"
                                           f"{tail(child_log.read_text(errors='replace'), 25)}")
                    await trio.sleep(0.05)
            marks["ready"] = json.loads((out / "ready.json").read_text())
            nursery.start_soon(probe, peer)
            mark("before")
            await trio.sleep(args.phase_s)
            mark("go")
            (out / "go").touch()
            with trio.fail_after(60):
                while not (out / "sent.json").exists():
                    if child.poll() is not None:
                        raise RuntimeError(f"the attacker exited ({child.returncode}) mid-flood")
                    await trio.sleep(0.02)
            marks["sent"] = json.loads((out / "sent.json").read_text())
            mark("flooded")
            with trio.move_on_after(SETTLE_TIMEOUT_S) as settle:
                await wait_settled()
            marks["settle_timed_out"] = settle.cancelled_caught
            mark("settled")
            await trio.sleep(args.phase_s)
            mark("after")
            marks["connected_at_end"] = peer in honest.connected_peers()
            nursery.cancel_scope.cancel()
    finally:
        if child is not None:
            await trio.to_thread.run_sync(stop_child, child, out / "stop")
    marks["samples"] = samples
    return marks


def part_sync(tmp: Path, target: Path, args) -> bool:
    import trio

    n = args.discoveries
    print(f"sync: an idle node (--max-experiments 0); an honest peer asks request_best every 50 ms; flood of {n} "
          f"discoveries from {math.ceil(n / 10)} identities through {args.forwarders} connections at "
          f"{args.rate:.0f} messages/s each", flush=True)
    node = start(tmp, target, "sync", "--max-experiments", "0",
                 python=["-m", "cProfile", "-o", str(tmp / "node.prof")] if args.profile_node else [])
    verdict = False
    try:
        address = node.wait(node.printed_address, START_TIMEOUT_S, "the node's address", poll=0.1)
        node.wait(lambda: ledger_meta(node.home, "head"), BASELINE_TIMEOUT_S, "the node's baseline", poll=0.1)
        node.wait(lambda: "research finished" in node.log(), BASELINE_TIMEOUT_S, "the node to go idle", poll=0.1)
        since = time.time()
        t = time.monotonic()
        marks = trio.run(sync_probe, tmp, node, address, target / "train.py", args)
        took = time.monotonic() - t
        samples = marks["samples"]
        sent = marks["sent"]
        ready = marks["ready"]
        before = [s for s in samples if marks["before"] <= s[0] < marks["go"]]
        during = [s for s in samples if marks["go"] <= s[0] < marks["settled"]]
        after = [s for s in samples if marks["settled"] <= s[0] < marks["after"]]
        print(f"sync: flood of {sent['sent']} discoveries sent in {sent['t_last'] - sent['t_first']:.2f} s; the node "
              f"settled {marks['settled'] - sent['t_last']:.1f} s after the last one"
              f"{' (TIMED OUT waiting to settle)' if marks['settle_timed_out'] else ''}; whole probe {took:.1f} s")
        t_last = sent["t_last"]
        print(phase_line(f"before ({marks['go'] - marks['before']:.1f} s)", before))
        print(phase_line(f"during ({marks['settled'] - marks['go']:.1f} s)", during))
        print(phase_line(f"  of which while sending ({t_last - marks['go']:.1f} s)", [s for s in during if s[0] < t_last]))
        print(phase_line(f"  of which after the last send ({marks['settled'] - t_last:.1f} s)",
                         [s for s in during if s[0] >= t_last]))
        print(phase_line(f"after  ({marks['after'] - marks['settled']:.1f} s)", after))
        cpu = marks["cpu"]
        for a, b, label in (("before", "go", "before"), ("go", "settled", "during"), ("go", "flooded", "while sending"),
                            ("settled", "after", "after")):
            seconds = marks[b] - marks[a]
            use = {who: 100 * (cpu[b][who] - cpu[a][who]) / seconds for who in ("node", "attacker", "prober")}
            print(f"sync: CPU {label}: node process {use['node']:.0f}% of one core, attacker {use['attacker']:.0f}%, "
                  f"prober {use['prober']:.0f}% (trainings excluded; {os.cpu_count()} cores)")
        peers = set(ready["ids"]) | set(ready["forwarders"])
        states = set(ready["states"])
        accepted = [r for r in read_rows(node.home, "SELECT state, author FROM discoveries") if r["state"] in states]
        rejected = rejections(node.home, peers, since)
        adoptions = [r for r in read_rows(node.home, "SELECT origin, status, reason FROM experiments WHERE "
                                          "proposer = 'adoption'") if r["origin"] in states]
        by_status: dict[str, int] = {}
        for r in adoptions:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        status = read_status(node.home)
        print(f"sync: head val_bpb {ready['head_val_bpb']:.4f}, each discovery claims {ready['claimed_val_bpb']:.4f} "
              f"(the mean of its runs on seeds {ready['seeds']}, each 0.03 below the head's)")
        print(f"sync: the node accepted {len(accepted)} of {sent['sent']} discoveries into its ledger; rejected, by "
              f"reason: {rejected or 'nothing'}; verified {len(adoptions)} (adoption experiments: "
              f"{by_status or 'none'}); banned {len(status.get('banned', []))} of {len(peers)} attacker ids; "
              f"honest peer still connected: {marks['connected_at_end']}; waiting for a verification budget "
              f"to refill: {status.get('pending_adoptions', '?')}")
        unaccounted = sent["sent"] - len(accepted) - sum(v for k, v in rejected.items() if not k.startswith(
            ("budget:", "false-claim", "parent-", "bad-patch", "state-mismatch", "error:")))
        if unaccounted:
            print(f"sync: {unaccounted} discoveries neither in the ledger nor rejected at the gossip layer "
                  f"(e.g. dropped by py-libp2p's queues or ignored as duplicates)")
        ok = [ms for _, ms, error in during if error is None]
        failed = [s for s in during if s[2] is not None]
        if not ok:
            print("goal sync during a discovery flood: p95 < 100 ms: NOT met (no answered requests during the flood)")
        else:
            p95 = percentile(ok, 95)
            verdict = p95 < P95_GOAL_MS and not failed
            print(f"goal sync during a {sent['sent']}-discovery flood: p95 < {P95_GOAL_MS:.0f} ms "
                  f"(measured {p95:.1f} ms{f', {len(failed)} requests failed' if failed else ''}): "
                  f"{'met' if verdict else 'NOT met'}")
        alive = node.popen.poll() is None
    finally:
        node.stop()
    troubles = suspicious_lines(node)
    clean = "stopped: any experiment in flight was recorded as interrupted" in node.log()
    if troubles or not clean or node.popen.returncode != 0:
        print(f"sync: node exit {node.popen.returncode}, stopped cleanly: {clean}, {len(troubles)} suspicious log "
              f"lines: {troubles[:5]}")
    elif not alive:
        print("sync: the node had exited before the end of the probe")
    return verdict


# ---- main -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("claims", "sync", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="3 experiments, 60 discoveries, 2 s phases (smoke test)")
    parser.add_argument("--experiments", type=int, help="--max-experiments of the claims part (default 8)")
    parser.add_argument("--discoveries", type=int, help="discoveries in the flood (default 300)")
    parser.add_argument("--identities", type=int, default=40, help="claiming identities (default 40)")
    parser.add_argument("--forwarders", type=int, default=FORWARDERS,
                        help=f"attacker connections the messages come through (default {FORWARDERS})")
    parser.add_argument("--rate", type=float, default=PER_FORWARDER_RATE,
                        help=f"messages per second on each attacker connection, {BATCH} per RPC (default "
                             f"{PER_FORWARDER_RATE:.0f}; py-libp2p penalises a forwarder above 100)")
    parser.add_argument("--phase-s", type=float, help="seconds of probing before and after the flood (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with homes and logs")
    parser.add_argument("--profile-node", action="store_true",
                        help="run the sync part's node under cProfile (its trio thread): node.prof in the temp dir "
                             "(implies --keep; the profiler slows the node, so its latencies are not the goal's)")
    # the attacker, when this script runs itself as a child process
    parser.add_argument("--child", choices=("claims", "discoveries"), help=argparse.SUPPRESS)
    for name in ("--address", "--home", "--out", "--target-train"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    args.experiments = args.experiments or (3 if args.quick else 8)
    args.discoveries = args.discoveries or (60 if args.quick else 300)
    args.phase_s = args.phase_s or (2.0 if args.quick else 5.0)
    args.keep = args.keep or args.profile_node

    from swarm_node.logs import configure
    configure(level="warning")  # the honest prober's network log stays quiet
    tmp = Path(tempfile.mkdtemp(prefix="hostile_load_"))
    # runs sleep RUN_SLEEP_S, and the xavier state does not hang, so another order of experiments never times out
    target = toy_target(tmp / "toy_target", RUN_SLEEP_S, edits={"    time.sleep(3600)": "    pass"})
    started = time.monotonic()
    print(f"hostile_load: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; temp dir {tmp}", flush=True)
    try:
        if args.part in ("claims", "both"):
            part_claims(tmp, target, args)
        if args.part in ("sync", "both"):
            part_sync(tmp, target, args)
    finally:
        print(f"hostile_load: took {time.monotonic() - started:.1f} s", flush=True)
        if args.keep:
            print(f"homes and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
