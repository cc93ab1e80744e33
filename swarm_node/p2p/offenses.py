"""Which rejections count against the peer that sent the message, and when they add up to a ban.

py-libp2p's score counts every validator failure (P4), but its mesh heartbeat never prunes low
scorers, so a repeat offender would stay in the mesh: SwarmNetwork bans it instead (blacklisted
in pubsub, dropped from the mesh and disconnected).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from libp2p.peer.id import ID

OFFENSE_WINDOW_S = 600.0
BAN_AFTER_OFFENSES = 5  # protocol violations by one peer within the window
# Deterministic protocol violations: every honest node rejects these, so whoever sent one to us
# is at fault. Clock skew (future-timestamp, stale-timestamp), local policy (policy:*), quotas
# (quota) and our own overload (overload) are not offenses.
OFFENSES = frozenset(
    {
        "oversized", "undecodable", "schema", "metric-bounds", "author-mismatch",
        "topic-mismatch", "unsigned", "bad-signature", "state-mismatch",
    }
)

# How the parts of the network report a rejection: (reason, the peer that sent it, the message
# when it decoded); SwarmNetwork counts it, and counts it as an offense when the reason is one.
Reject = Callable[[str, ID, Any], None]


def count_offense(history: deque[float], now: float) -> int:
    """Add an offense at `now` to a peer's offense times; how many fall within the window."""
    history.append(now)
    while history and history[0] < now - OFFENSE_WINDOW_S:
        history.popleft()
    return len(history)
