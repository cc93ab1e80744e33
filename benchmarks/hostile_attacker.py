"""hostile_load's attacker, a child process (`hostile_load.py --child claims|discoveries`): the states it
claims, how it signs and paces its messages, and the two floods."""
from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
from pathlib import Path

from hostile_common import (BATCH, CHILD_READY_TIMEOUT_S, CLAIM_INTERVAL_S, head_runs, read_rows,
                            write_json)
from swarm_node.testing import ledger_meta


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
