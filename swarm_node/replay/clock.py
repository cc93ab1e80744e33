"""Virtual time for the replay: discrete events, with real gossip in between.

Agents run the real node code. When one starts a training run it asks the clock to spend the
run's virtual seconds and blocks. The clock moves in windows: it lets go every agent due within
the window, waits until they have all blocked again and every gossip message published meanwhile
has reached every agent (real libp2p on 127.0.0.1), then has each agent take in its new messages
in a fixed order. So a message takes effect at the next window, and the same seed makes the same
decisions however fast or slow the real network is.
"""
from __future__ import annotations

import contextvars
import heapq
import itertools
import time

import structlog
import trio

log = structlog.get_logger("swarm_node.replay")


current_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar("replay_agent", default=None)


class VirtualClock:
    def __init__(self, gossip_timeout: float = 3.0):
        self.now = 0.0  # the synchronisation point: every agent has seen everything before it
        self.agent_now: dict[str, float] = {}  # each released agent's own time within a window
        self.gossip_timeout = gossip_timeout
        self.gossip_timeouts = 0  # deliveries given up on (then determinism is not guaranteed)
        self._queue: list[tuple[float, int, str, trio.Event]] = []
        self._seq = itertools.count()
        self._busy: set[str] = set()
        self._idle: dict[str, trio.Event] = {}
        self._awaiting: dict[str, set[str]] = {}  # message id -> agents that have yet to handle it
        self._handled: dict[str, set[str]] = {}  # message id -> agents that handled it already
        self._gone: set[str] = set()
        self._changed = trio.Event()
        self._released_at = time.monotonic()

    def event_time(self) -> float:
        """Virtual seconds for an event: training time is virtual, gossip latency real."""
        agent = current_agent.get()
        base = self.agent_now.get(agent, self.now) if agent else self.now
        return base + (time.monotonic() - self._released_at)

    # --- called by agents -----------------------------------------------------------------------

    async def spend(self, agent: str, seconds: float) -> None:
        """Block the agent until `seconds` of virtual time have passed for it."""
        woken = trio.Event()
        start = self.agent_now.get(agent, self.now)
        heapq.heappush(self._queue, (start + seconds, next(self._seq), agent, woken))
        self._settle(agent)
        await woken.wait()

    async def wait_for_news(self, agent: str) -> None:
        woken = trio.Event()
        self._idle[agent] = woken
        self._settle(agent)
        await woken.wait()

    def published(self, message_id: str, receivers: set[str]) -> None:
        missing = receivers - self._handled.get(message_id, set())
        if missing:
            self._awaiting.setdefault(message_id, set()).update(missing)

    def handled(self, agent: str, message_id: str) -> None:
        self._handled.setdefault(message_id, set()).add(agent)
        waiting = self._awaiting.get(message_id)
        if waiting is not None:
            waiting.discard(agent)
            if not waiting:
                del self._awaiting[message_id]
            self._changed.set()

    def gone(self, agent: str) -> None:
        """An agent left: nothing waits for it any more."""
        self._gone.add(agent)
        self._busy.discard(agent)
        self._idle.pop(agent, None)
        for mid in list(self._awaiting):
            self._awaiting[mid].discard(agent)
            if not self._awaiting[mid]:
                del self._awaiting[mid]
        self._changed.set()

    def _settle(self, agent: str) -> None:
        self._busy.discard(agent)
        self._changed.set()

    # --- called by the engine -------------------------------------------------------------------

    def mark_busy(self, agent: str) -> None:
        self._busy.add(agent)

    async def quiet(self) -> None:
        """Until no agent is running code and every published message has been handled.

        A message is given up on only when deliveries have stalled: `gossip_timeout` seconds with
        no agent busy and no message handled. A slow burst (one core forwarding for 35 hosts)
        still makes progress and is waited for; a lost message is not waited for forever."""
        while self._busy or self._awaiting:
            self._changed = trio.Event()
            with trio.move_on_after(float("inf") if self._busy else self.gossip_timeout):
                await self._changed.wait()
                continue
            missing = sorted({a for waiting in self._awaiting.values() for a in waiting})
            log.warning("gossip did not reach every agent in time", messages=len(self._awaiting), agents=missing)
            self.gossip_timeouts += len(self._awaiting)
            self._awaiting.clear()

    def idle_agents(self) -> list[str]:
        return sorted(self._idle)

    def wake(self, agent: str) -> None:
        self.agent_now[agent] = self.now
        self._busy.add(agent)
        self._idle.pop(agent).set()

    def next_wake_time(self) -> float | None:
        while self._queue and self._queue[0][2] in self._gone:
            heapq.heappop(self._queue)
        return self._queue[0][0] if self._queue else None

    def advance_to(self, t: float) -> None:
        self.now = max(self.now, t)
        self.agent_now.clear()
        self._released_at = time.monotonic()

    def release_until(self, end: float) -> int:
        """Let every agent due by `end` go at once. They see each other's messages only at the
        next synchronisation point, so the order of their decisions cannot depend on timing."""
        released = 0
        self._released_at = time.monotonic()
        while (t := self.next_wake_time()) is not None and t <= end:
            _, _, agent, woken = heapq.heappop(self._queue)
            self.agent_now[agent] = t
            self._busy.add(agent)
            woken.set()
            released += 1
        self.now = max(self.now, end)
        return released
