"""The diff policy: which changes to train.py a node will run, its own or a peer's.

`hparams` (default): only literal values inside the hyperparameter block may change, each within
the search space's bounds; checked on the AST, so comments and spacing do not matter but any code
change does. `code` (opt-in): any train.py that parses, still run only inside the sandbox.
"""
from __future__ import annotations

import ast
import math

from .hparams import END_MARKER, START_MARKER, parse_python, read_block

MODES = ("hparams", "code")


def _code_outside_block(source: str) -> str:
    lines = source.splitlines()
    try:
        start = lines.index(START_MARKER)
        end = lines.index(END_MARKER, start)
    except ValueError:
        raise ValueError("hyperparameter block markers not found") from None
    return ast.dump(parse_python("\n".join(lines[:start] + lines[end + 1:])))


def check_value(name: str, value, old, space: dict) -> str | None:
    bounds = space.get(name)
    if bounds is None:
        return f"{name} is not in the search space"
    if type(value) is not type(old):
        return f"{name} must stay a {type(old).__name__}, got {type(value).__name__}"
    if "choices" in bounds:
        if value not in bounds["choices"]:
            return f"{name}={value!r} is not one of {bounds['choices']}"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}={value!r} is not finite"
    if not bounds["min"] <= value <= bounds["max"]:
        return f"{name}={value!r} is outside [{bounds['min']}, {bounds['max']}]"
    return None


def check_change(parent_src: str, new_src: str, *, mode: str, space: dict) -> str | None:
    """None if `new_src` may be run, else the reason it is refused."""
    if mode not in MODES:
        raise ValueError(f"unknown diff policy {mode!r}; use one of {MODES}")
    try:
        parse_python(new_src)
    except SyntaxError as exc:
        return f"train.py does not parse: {exc.msg} (line {exc.lineno})"
    if mode == "code":
        return None
    try:
        old, new = read_block(parent_src), read_block(new_src)
        if _code_outside_block(parent_src) != _code_outside_block(new_src):
            return "code outside the hyperparameter block changed (needs --policy code)"
    except (ValueError, SyntaxError) as exc:
        return f"hyperparameter block: {exc}"
    if list(old) != list(new):
        return "hyperparameter names were added, removed or reordered"
    for name, value in new.items():
        if value != old[name] or type(value) is not type(old[name]):
            reason = check_value(name, value, old[name], space)
            if reason:
                return reason
    return None
