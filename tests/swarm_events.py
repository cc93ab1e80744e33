"""A plausible swarm event stream (the format of swarm_node/events.py), to test the dashboard with.

Test data for the page only: peers in tiers join and connect, run keep/discard experiments on
their tier's budget, publish discoveries that gossip hop by hop over the links, and the peers of
the author's tier adopt a better discovery once one seed they re-ran reproduced it. The real
replay and a real swarm are tested elsewhere.

Keeps take turns (the swarm's k-th keep, k = 0, 1, 2, ...): k % 4 == 0 changes one knob and its
paired decision is measured (an `effect` of kind "single"); k % 4 == 1 and 3 change one knob with
no `effect` ("not measured"); k % 4 == 2 changes two knobs and only the first is ablated (an
`effect` of kind "ablation": measured when k % 8 == 2, within 2 SE when k % 8 == 6), so the second
is "combined, not ablated". The turns draw from their own generator: the rest of the stream is
what it was without them.

    events = generate(peers=35, hours=2)          # about 3,500 events
    write_jsonl(events, path)
"""
from __future__ import annotations

import ast
import hashlib
import heapq
import itertools
import json
import random
from pathlib import Path

# tier: (experiment budget in seconds, baseline val_bpb, role, name prefix, knobs the role tunes)
TIERS = {
    "gpu-large": (300, 1.320, "lr-sweep", "h100", [("LEARNING_RATE", "3e-4"), ("WARMUP_STEPS", "100"),
                                                     ("LR_SCHEDULE", '"cosine"'), ("BETA2", "0.95")]),
    "gpu-consumer": (120, 1.580, "shape", "rtx", [("N_LAYER", "6"), ("N_EMBD", "256"), ("N_HEAD", "8"),
                                                   ("DROPOUT", "0.1")]),
    "cpu": (60, 2.150, "init-norm", "cpu", [("INIT", '"normal"'), ("NORM", '"layernorm"'),
                                           ("TIE_EMBEDDINGS", "False"), ("WEIGHT_DECAY", "0.1")]),
}
SHARES = {"gpu-large": 5, "gpu-consumer": 12, "cpu": 18}  # of 35


def state_hash(*parts) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def tier_counts(peers: int) -> dict[str, int]:
    if peers <= 3:
        return {"cpu": peers}
    counts = {tier: max(1, round(peers * share / 35)) for tier, share in SHARES.items()}
    counts["cpu"] += peers - sum(counts.values())
    return counts


def make_diff(knob: str, old: str, new: str, line: int, *more: tuple[str, str, str]) -> str:
    """A diff of the hyperparameter block setting `knob` (and each (knob, old, new) of `more`)."""
    changed = [(knob, old, new), *more]
    body = "".join(f"-{k} = {o}\n" for k, o, _ in changed) + "".join(f"+{k} = {n}\n" for k, _, n in changed)
    return (f"--- a/train.py\n+++ b/train.py\n@@ -{line},{len(changed) + 2} +{line},{len(changed) + 2} @@\n"
            f" # hyperparameters\n{body} BATCH_SIZE = 32\n")


def new_value(rng: random.Random, knob: str, old: str) -> str:
    choices = {
        "LR_SCHEDULE": ['"cosine"', '"linear"', '"constant"'], "INIT": ['"normal"', '"xavier"', '"small"'],
        "NORM": ['"layernorm"', '"rmsnorm"'], "TIE_EMBEDDINGS": ["True", "False"],
    }
    if knob in choices:
        return rng.choice([c for c in choices[knob] if c != old] or choices[knob])
    if "." in old or "e" in old:
        return f"{float(old) * rng.choice([0.5, 0.7, 1.4, 2.0]):.3g}"
    return str(max(1, int(old) * 2 if rng.random() < 0.5 else int(old) // 2))


class Sim:
    def __init__(self, peers: int, hours: float, seed: int, hop_delay: tuple[float, float], start_wall: float):
        self.rng = random.Random(seed)
        self.credit_rng = random.Random(f"{seed}-credit")  # the keeps' extra knobs and effects
        self.keeps = 0
        self.end = hours * 3600
        self.hop_delay = hop_delay
        self.start_wall = start_wall
        self.events: list[tuple[float, int, dict]] = []
        self.actions: list = []
        self.seq = itertools.count()
        self.peers: dict[str, dict] = {}
        self.links: set[tuple[str, str]] = set()
        counts = tier_counts(peers)
        names = []
        for tier, n in counts.items():
            prefix = TIERS[tier][3]
            names += [(f"{prefix}-{i + 1:02d}", tier) for i in range(n)]
        self.rng.shuffle(names)
        self.order = names

    # -- output ------------------------------------------------------------------------------

    def emit(self, t: float, type: str, **fields) -> None:
        if t > self.end:
            return
        t = round(t, 3)
        heapq.heappush(self.events, (t, next(self.seq), {"type": type, "t": t,
                                                          "wall": round(self.start_wall + t, 3), **fields}))

    def later(self, t: float, action, *args) -> None:
        heapq.heappush(self.actions, (t, next(self.seq), action, args))

    # -- the swarm -------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        for i, (name, tier) in enumerate(self.order):
            self.later(i * 1.5 + self.rng.uniform(0, 1), self.join, name, tier)
        while self.actions:
            t, _, action, args = heapq.heappop(self.actions)
            if t > self.end:
                break
            action(t, *args)
        return [e for _, _, e in sorted(self.events)]

    def join(self, t: float, name: str, tier: str) -> None:
        budget, base, role, _, knobs = TIERS[tier]
        known = [p for p in self.peers if self.peers[p]["alive"]]
        self.peers[name] = {"tier": tier, "alive": True, "n": 0, "knobs": dict(knobs),
                            "head": state_hash(tier, "baseline"), "val": None}
        self.emit(t, "join", peer=name, tier=tier, role=role)
        for other in self.rng.sample(known, min(len(known), 3)):
            self.connect(t + self.rng.uniform(0.2, 1.0), name, other)
        self.later(t + budget * self.rng.uniform(0.9, 1.1), self.baseline, name)

    def connect(self, t: float, a: str, b: str) -> None:
        self.links.add(tuple(sorted((a, b))))
        self.emit(t, "link", a=a, b=b)

    def neighbours(self, name: str) -> list[str]:
        return sorted(b if a == name else a for a, b in self.links if name in (a, b))

    def baseline(self, t: float, name: str) -> None:
        peer = self.peers[name]
        tier = peer["tier"]
        val = round(TIERS[tier][1] + self.rng.gauss(0, 0.003), 4)
        peer["val"] = val
        self.emit(t, "experiment", peer=name, id=f"{name}-0", state=peer["head"], description="baseline",
                  status="baseline", val_bpb=val, test_bpb=round(val + 0.012, 4), tier=tier)
        self.later(t + TIERS[tier][0] * self.rng.uniform(0.9, 1.1), self.experiment, name)

    def experiment(self, t: float, name: str) -> None:
        peer = self.peers[name]
        if not peer["alive"]:
            return
        tier = peer["tier"]
        budget, base = TIERS[tier][0], TIERS[tier][1]
        peer["n"] += 1
        knob, old = self.rng.choice(list(peer["knobs"].items()))
        new = new_value(self.rng, knob, old)
        state = state_hash(name, peer["n"], knob, new)
        description = f"{knob} {old} -> {new}"
        progress = (base - peer["val"]) / base
        delta = self.rng.gauss(0.004 + 0.5 * progress, 0.006)
        common = dict(peer=name, id=f"{name}-{peer['n']}", state=state, description=description, tier=tier)
        if self.rng.random() < 0.03:
            self.emit(t, "experiment", status="crash", val_bpb=None, test_bpb=None, **common)
        elif delta < -0.0045:
            turn = self.keeps
            self.keeps += 1
            changes, more = {knob: new}, ()
            if turn % 4 == 2:  # a combined change: a second knob along
                knob2 = self.credit_rng.choice(sorted(k for k in peer["knobs"] if k != knob))
                old2 = peer["knobs"][knob2]
                new2 = new_value(self.credit_rng, knob2, old2)
                changes[knob2] = new2
                more = ((knob2, old2, new2),)
                description = f"{description}, {knob2} {old2} -> {new2}"
                common["description"] = description
            val = round(peer["val"] + delta, 4)
            test = round(val + 0.012 + self.rng.gauss(0, 0.002), 4)
            self.emit(t, "experiment", status="keep", val_bpb=val, test_bpb=test, **common)
            parent = peer["head"]
            gain = round(peer["val"] - val, 4)
            peer.update(head=state, val=val)
            peer["knobs"].update(changes)
            self.emit(t + 0.05, "discovery", id=state, peer=name, tier=tier, state=state, parent=parent,
                      val_bpb=val, test_bpb=test, description=description,
                      diff=make_diff(knob, old, new, 12 + list(peer["knobs"]).index(knob), *more))
            self.effects(t + 0.05, turn, name, tier, state, knob, new, gain, budget)
            self.gossip(t + 0.05, name, state, val, changes)
        else:
            val = round(peer["val"] + abs(delta) + 0.001, 4)
            self.emit(t, "experiment", status="discard", val_bpb=val, test_bpb=round(val + 0.012, 4), **common)
        self.later(t + budget * self.rng.uniform(0.85, 1.15), self.experiment, name)

    def effects(self, t: float, turn: int, name: str, tier: str, state: str, knob: str, new: str, gain: float,
                budget: float) -> None:
        """The `effect` events of the keep `turn` (see the module's docstring); `gain` its improvement."""
        common = dict(peer=name, tier=tier, state=state, name=knob, value=ast.literal_eval(new))
        if turn % 4 == 0:  # a single change: its paired decision is the measurement
            se = round(max(gain / 4, 0.0005) * self.credit_rng.uniform(0.8, 1.2), 4)
            self.emit(t + 0.01, "effect", effect=gain, se=se, seeds=[0, 1, 2], kind="single", **common)
        elif turn % 4 == 2:  # a combined change: the first knob reverted in the kept state, after one more run
            if turn % 8 == 2:
                effect = round(gain * self.credit_rng.uniform(0.5, 0.8), 4)
                se = round(effect / 5, 4)
            else:
                effect = round(gain * 0.1, 4)
                se = round(max(gain / 3, 0.0005), 4)
            self.emit(t + budget, "effect", effect=effect, se=se, seeds=[0, 1], kind="ablation", **common)

    def gossip(self, t: float, author: str, discovery: str, val: float, changes: dict[str, str]) -> None:
        """Each peer receives the discovery from the first neighbour that had it (a flood over the links)."""
        best = {author: t}
        done = set()
        frontier = [(t, author, None)]
        while frontier:
            when, name, sender = heapq.heappop(frontier)
            if name in done:
                continue
            done.add(name)
            if sender is not None:
                self.emit(when, "receipt", id=discovery, peer=name, **{"from": sender})
                if self.peers[name]["tier"] == self.peers[author]["tier"]:
                    budget = TIERS[self.peers[name]["tier"]][0]
                    self.later(when + budget * self.rng.uniform(0.9, 1.2), self.adopt, name, discovery, val, changes)
            for other in self.neighbours(name):
                if other in done or not self.peers[other]["alive"]:
                    continue
                at = when + self.rng.uniform(*self.hop_delay)
                if at < best.get(other, float("inf")):
                    best[other] = at
                    heapq.heappush(frontier, (at, other, name))

    def adopt(self, t: float, name: str, discovery: str, val: float, changes: dict[str, str]) -> None:
        peer = self.peers[name]
        if not peer["alive"] or peer["val"] is None or val >= peer["val"]:
            return
        # runs are reproducible: the one seed re-run matches the claim, so the head's mean is the discovery's
        peer.update(head=discovery, val=val)
        peer["knobs"].update(changes)
        self.emit(t, "adoption", id=discovery, peer=name, state=discovery, val_bpb=val, verified=True)

    def churn(self) -> None:
        """One peer leaves for a while, and a few messages get rejected."""
        names = [n for n, _ in self.order]
        if len(names) > 6:
            gone = names[-2]
            self.later(self.end * 0.6, self.leave, gone)
            self.later(self.end * 0.75, self.rejoin, gone)
        for k in range(min(4, len(names) // 6)):
            a, b = self.rng.sample(names, 2)
            self.emit(self.end * (0.2 + 0.15 * k), "reject", peer=a, **{"from": b},
                      reason="diff changes code outside the hyperparameter block")

    def leave(self, t: float, name: str) -> None:
        self.peers[name]["alive"] = False
        self.emit(t, "leave", peer=name)
        for link in sorted(l for l in self.links if name in l):
            self.links.discard(link)

    def rejoin(self, t: float, name: str) -> None:
        peer = self.peers[name]
        peer["alive"] = True
        self.emit(t, "join", peer=name, tier=peer["tier"], role=TIERS[peer["tier"]][2])
        others = [p for p in self.peers if p != name and self.peers[p]["alive"]]
        for other in self.rng.sample(others, min(3, len(others))):
            self.connect(t + 0.5, name, other)
        self.later(t + TIERS[peer["tier"]][0], self.experiment, name)


def generate(peers: int = 35, hours: float = 2.0, seed: int = 7, hop_delay: tuple[float, float] = (0.4, 2.0),
             start_wall: float = 1_790_000_000.0) -> list[dict]:
    """Events of a swarm of `peers` running for `hours` of virtual time, ordered by t."""
    sim = Sim(peers, hours, seed, hop_delay, start_wall)
    sim.churn()
    return sim.run()


def write_jsonl(events: list[dict], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for event in events:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":
    import collections
    import sys
    evs = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 35, float(sys.argv[2]) if len(sys.argv) > 2 else 2.0)
    print(len(evs), collections.Counter(e["type"] for e in evs))
