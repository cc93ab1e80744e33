"""Locate the files that ship with the node: research targets, configs, protocol, static files.

From a source checkout they sit at the repository's top level; from a wheel they are package data
under `swarm_node/` (see pyproject's package-dir). Either way they are read, never imported.
"""
from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_REPO = Path(__file__).resolve().parent.parent
_PACKAGED = {"experiments": "targets", "configs": "configs", "protocol": "protocol"}


def asset_dir(top: str) -> Path:
    """`top` is the repository's folder name: experiments, configs or protocol."""
    checkout = _REPO / top
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("swarm_node") / _PACKAGED[top]))


def target_dir(name: str = "tinygpt") -> Path:
    path = asset_dir("experiments") / name
    if not (path / "train.py").is_file():
        raise FileNotFoundError(f"research target {name!r} not found at {path}")
    return path


@cache
def load_config(name: str) -> dict:
    """A TOML file from configs/, e.g. load_config("tiers")."""
    with open(asset_dir("configs") / f"{name}.toml", "rb") as f:
        return tomllib.load(f)
