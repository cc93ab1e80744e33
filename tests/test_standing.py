"""Verification budgets, peer standing and claims: pure bookkeeping, on a clock the test moves."""
from swarm_node.research.hearsay import CLAIMS_PER_PEER, ClaimBook
from swarm_node.standing import NEWCOMERS_BURST, PROVEN_AUTHOR_BURST, Standing


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unproven_author_gets_one_verification_until_its_budget_refills():
    clock = Clock()
    s = Standing(refill_s=100, clock=clock)
    assert s.may_verify("liar")
    assert not s.may_verify("liar")
    clock.now += 99
    assert not s.may_verify("liar")
    clock.now += 2
    assert s.may_verify("liar")


def test_fresh_identities_share_one_small_budget():
    clock = Clock()
    s = Standing(refill_s=100, clock=clock)
    granted = sum(s.may_verify(f"sybil-{i}") for i in range(50))
    assert granted == NEWCOMERS_BURST


def test_a_proven_author_gets_more_and_a_liar_is_banned():
    clock = Clock()
    s = Standing(refill_s=100, clock=clock)
    assert s.may_verify("honest")
    assert not s.verified("honest", held=True)
    clock.now += 1000
    assert sum(s.may_verify("honest") for _ in range(10)) == PROVEN_AUTHOR_BURST
    assert s.good("honest")

    assert not s.verified("liar", held=False)  # one failure: not yet a ban (could be bad luck)
    assert not s.good("liar")
    assert s.verified("liar", held=False)  # the second: banned


def test_a_peer_with_more_verified_claims_than_failures_is_not_banned():
    s = Standing(refill_s=100, clock=Clock())
    for _ in range(3):
        s.verified("busy", held=True)
    assert not s.verified("busy", held=False)
    assert not s.verified("busy", held=False)
    assert s.verified("busy", held=False) is False and s.verified("busy", held=False) is True


def test_an_unknown_or_offending_peer_is_not_in_good_standing():
    s = Standing(refill_s=100, clock=Clock())
    assert not s.good("stranger")
    s.heard("stranger")
    assert s.good("stranger")
    s.offense("stranger")
    assert not s.good("stranger")


def test_claims_expire_and_each_peer_holds_only_a_few():
    clock = Clock()
    book = ClaimBook(ttl_s=60, clock=clock)
    for i in range(10):
        book.add("squatter", f"state-{i}")
    assert book.live() == {f"state-{i}" for i in range(10 - CLAIMS_PER_PEER, 10)}
    book.add("honest", "mine")
    clock.now += 61
    assert book.live() == set() and len(book) == 0


def test_a_repeated_claim_is_renewed_not_duplicated():
    clock = Clock()
    book = ClaimBook(ttl_s=60, clock=clock)
    book.add("peer", "a")
    clock.now += 50
    book.add("peer", "a")
    clock.now += 20  # past the first claim's expiry, within the renewed one's
    assert book.live() == {"a"} and len(book) == 1
    for i in range(CLAIMS_PER_PEER):
        book.add("peer", f"s{i}")
    assert "a" not in book.live() and len(book) == CLAIMS_PER_PEER


def test_a_claim_that_holds_gives_its_token_back():
    """Only lies use up the budget: an honest author's next discovery is verified at once."""
    s = Standing(refill_s=1000, clock=Clock())
    assert s.may_verify("honest") and not s.may_verify("honest", spend=False)
    s.verified("honest", held=True)
    assert s.may_verify("honest") and not s.may_verify("honest", spend=False)
    s.verified("liar", held=False)  # a lie gives nothing back
    assert s.may_verify("liar") and not s.may_verify("liar", spend=False)
    s.verified("liar", held=False)
    assert not s.may_verify("liar", spend=False)
