"""Which addresses heard of in a Presence the node dials.

A Presence is relayed by peers who do not check its addresses, so dialing whatever it names
would let anyone point the swarm's connections at a third party: only the author's own plain
TCP addresses are dialed, and only a few.
"""
from __future__ import annotations

import ipaddress

import multiaddr

JOIN_LISTEN = "/ip4/0.0.0.0/tcp/4001"  # where `join` accepts peers unless --listen says otherwise
_DIAL_HOST_PROTOCOLS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})


def presence_dial_addrs(author: str, addrs: list[str], limit: int = 2) -> list[str]:
    """The addresses of a Presence worth dialing: at most `limit`, each a multiaddr of exactly
    /<ip4|ip6|dns|dns4|dns6>/<host>/tcp/<port>/p2p/<author>, i.e. the author's own address (a
    relayed Presence must not make us dial third parties), not an unspecified or multicast IP,
    nor port 0. Canonical text, in the given order, without duplicates."""
    chosen: list[str] = []
    if limit <= 0 or not author:
        return chosen
    for text in addrs:
        if len(chosen) >= limit:
            break
        if not isinstance(text, str) or len(text) > 256:
            continue
        try:
            address = multiaddr.Multiaddr(text)
            parts = [(protocol.name, value) for protocol, value in address.items()]
        except Exception:
            continue
        if len(parts) != 3:
            continue
        (host_kind, host), (transport, port), (p2p, peer) = parts
        if host_kind not in _DIAL_HOST_PROTOCOLS or transport != "tcp" or p2p != "p2p" or peer != author:
            continue
        try:
            if not 0 < int(port) < 65536:
                continue
            if host_kind in ("ip4", "ip6"):
                ip = ipaddress.ip_address(host)
                if ip.is_unspecified or ip.is_multicast:
                    continue
        except ValueError:
            continue
        canonical = str(address)
        if canonical not in chosen:
            chosen.append(canonical)
    return chosen
