"""Gossip in the replay: through the virtual clock, never the moment it arrives.

A message an agent receives waits in its inbox until the clock's next synchronisation point; then
every agent takes in its inbox in one fixed order. The clock counts each published message until
every ready agent has it, so a night's decisions do not depend on how fast this machine forwards.
"""
from __future__ import annotations

from ..node import Delivery
from .clock import VirtualClock


class ClockDelivery(Delivery):
    def __init__(self, clock: VirtualClock, agent: str, receivers, *, gossip: bool = True):
        """`receivers()`: the agents a message published now must reach; `gossip=False`: an isolated
        agent (the ablation night), whose messages nobody waits for."""
        self.clock, self.agent, self.receivers, self.gossip = clock, agent, receivers, gossip
        self.inbox: list[tuple] = []

    async def received(self, node, msg, peer: str, message_id: str) -> None:
        self.inbox.append((msg, peer, message_id))
        self.clock.handled(self.agent, message_id)

    def published(self, message_id: str, msg) -> None:
        if self.gossip and msg.type != "presence":
            self.clock.published(message_id, self.receivers())

    async def idle(self, node) -> None:
        await self.clock.wait_for_news(self.agent)

    def apply(self, node, order, since: float) -> None:
        """Take in the inbox sorted by `order`. Messages published before `since` (wall time, when the
        agent joined) are dropped: GossipSub's IHAVE hands a newcomer the last seconds of traffic at
        whatever moment it arrives (seconds are many virtual minutes here); what came before reaches
        it by sync."""
        items = sorted((item for item in self.inbox if item[0].ts >= since), key=order)
        self.inbox.clear()
        for msg, peer, message_id in items:
            node.handle_now(msg, peer, message_id)
