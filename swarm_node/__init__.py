"""swarm-node: autonomous keep/discard research loops that share winning diffs over libp2p."""

__version__ = "0.1.0"
