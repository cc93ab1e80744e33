"""How research takes in peers' discoveries (research/swarm.py: Intake), with no libp2p host: a real
ledger, a real git workspace, the loop of test_adoption.py, and in place of the network a `Swarm`
that serves parents from a dict and records what the intake refused, banned and adopted."""
import time

import trio

from swarm_node.messages import Adoption, Discovery, SeedRun, state_hash
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.swarm import PENDING_PER_AUTHOR, Intake
from swarm_node.research.workspace import make_diff
from swarm_node.standing import Standing

from conftest import TOY_TARGET
from test_adoption import BASE, SEEDS, make_loop, value
from wire_samples import ALICE, BOB

CAROL = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"
ME = "12D3KooW" + "Me" * 22


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Network:
    """The intake's `Swarm`, without sockets: parents from a dict, every call recorded."""

    def __init__(self, states: dict[str, str] | None = None):
        self.states = states or {}
        self.rejected: list[tuple[str, str]] = []
        self.bans: set[str] = set()
        self.adoptions: list[Adoption] = []

    def reject(self, reason, author, msg):
        self.rejected.append((reason, author))

    def banned(self, author):
        return author in self.bans

    def ban(self, author, reason):
        self.bans.add(author)

    async def fetch_state(self, state, prefer):
        return self.states.get(state)

    async def adopted(self, adoption):
        self.adoptions.append(adoption)


def intake(tmp_path, network, clock=None):
    loop, runner = make_loop(tmp_path)
    loop.join_swarm(ME, loop.observer)  # a node in a swarm: its author is a peer id
    standing = Standing(refill_s=100.0, clock=clock or Clock())
    return Intake(loop, standing, network, root_source=BASE, sized=["N_LAYER", "N_EMBD"]), runner


def discovery(loop, parent: str, change: dict, *, author=ALICE, lie=0.0, bench=None, hparams=None) -> Discovery:
    source = write_block(parent, change)
    runs = [SeedRun(seed=s, val_bpb=value(read_block(source), s) - lie, test_bpb=value(read_block(source), s) + 0.01)
            for s in SEEDS]
    return Discovery(author=author, ts=time.time(), bench=bench or loop.settings.bench, state=state_hash(source),
                     parent=state_hash(parent), diff=make_diff(parent, source),
                     val_bpb=sum(r.val_bpb for r in runs) / len(runs), runs=runs, noise=0.01,
                     description=f"{change}", hparams=hparams or change)


def test_a_discovery_on_a_parent_we_lack_is_fetched_checked_verified_adopted_and_told(tmp_path):
    kaiming = write_block(BASE, {"INIT": "kaiming"})  # the author's own earlier keep: not in our ledger
    network = Network({state_hash(kaiming): kaiming})
    take, runner = intake(tmp_path, network)
    d = discovery(take.loop, kaiming, {"LEARNING_RATE": 0.006})

    async def main():
        await take.loop.prepare(TOY_TARGET)
        take.take(d, new=True)
        assert take.has_news()
        await take.adopt_pending()

    trio.run(main)
    assert take.loop.head.state == d.state and network.rejected == []
    (told,) = network.adoptions
    assert told.discovery_state == d.state and told.verified and told.val_bpb == take.loop.head.val_bpb
    assert runner.calls[-1][0] == d.state  # one seed re-ran here
    assert take.standing.proven(ALICE)  # its runs are now reused instead of re-run
    assert take.loop.ledger.best(take.loop.settings.bench)["author"] == ALICE


def test_false_claims_are_refused_and_the_liar_banned_after_its_second(tmp_path):
    clock, network = Clock(), Network()
    take, _ = intake(tmp_path, network, clock)
    lies = [discovery(take.loop, BASE, change, lie=0.001) for change in ({"INIT": "kaiming"}, {"NORM": "rmsnorm"})]

    async def main():
        await take.loop.prepare(TOY_TARGET)
        for d in lies:
            clock.now += 1000  # the author's verification budget refills
            take.take(d, new=True)
            await take.adopt_pending()

    trio.run(main)
    assert [r for r, _ in network.rejected] == ["false-claim", "false-claim"]
    assert network.bans == {ALICE} and network.adoptions == []
    assert take.loop.head.state == state_hash(BASE)


def test_an_author_floods_the_queue_and_gets_only_its_best_few_kept(tmp_path):
    network = Network()
    take, _ = intake(tmp_path, network)
    changes = [{"LEARNING_RATE": lr} for lr in (0.0011, 0.0012, 0.006, 0.0013)]
    ds = [discovery(take.loop, BASE, c) for c in changes]
    for d in ds:
        take.take(d, new=True)
    assert len(take.pending) == PENDING_PER_AUTHOR
    assert ds[2].state in take.pending  # the best (0.006) stays
    assert [r for r, _ in network.rejected].count("budget:pending") == len(ds) - PENDING_PER_AUTHOR
    take.take(discovery(take.loop, BASE, {"INIT": "kaiming"}, author=BOB), new=True)
    assert len(take.pending) == PENDING_PER_AUTHOR + 1  # another author's is not pushed out


def test_another_tiers_discovery_becomes_a_candidate_only_when_a_good_peer_verified_it(tmp_path):
    network = Network()
    take, _ = intake(tmp_path, network)
    gpu = take.loop.settings.bench.model_copy(update={"tier": "gpu-large"})
    d = discovery(take.loop, BASE, {"NORM": "rmsnorm"}, bench=gpu, hparams={"NORM": "rmsnorm", "N_EMBD": 96})

    def adoption(author, verified=True):
        return Adoption(author=author, ts=time.time(), bench=gpu, discovery_state=d.state, state=d.state,
                        val_bpb=d.val_bpb if verified else None, verified=verified)

    take.take(d, new=True)
    assert take.pending == {}  # not our benchmark key: never adopted as is
    take.take(adoption(ALICE), new=True)  # its own author vouching: not enough
    take.take(adoption(BOB, verified=False), new=True)  # adopted unverified: not enough
    take.take(adoption(CAROL), new=True)  # verified, but a peer this node never heard from
    assert take.loop.transfers == []
    take.standing.heard(BOB)
    take.take(adoption(BOB), new=True)
    (candidate,) = take.loop.transfers
    assert candidate.hparams_changed == {"NORM": "rmsnorm"} and candidate.tier == "gpu-large"  # the size stays the tier's
