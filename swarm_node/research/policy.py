"""The diff policy: which changes to train.py a node will run, its own or a peer's.

`hparams` (default): an exact text rule, because a diff is judged by the bytes Python will read,
not by a parse. `ast.parse` sees an already-decoded str, while `python train.py` decodes the bytes
itself: a PEP 263 declaration (`# coding: raw_unicode_escape`) slipped into line 1 or 2, or hidden
behind a character `str.splitlines()` takes for a line break, made the two disagree and ran a
payload that the parse saw as a comment. So both texts must be printable ASCII and "\n" only, every
line outside the hyperparameter block stays byte-identical, and a line inside it may change only
its literal, to a value of the same type within the search space.
`code` (opt-in): any train.py that parses, still run only inside the sandbox.
"""
from __future__ import annotations

import math
import re

from .hparams import find_markers, parse_line, parse_python, split_lines
from .workspace import parse_diff

MODES = ("hparams", "code")

_UNCLEAN = re.compile(r"[^\x20-\x7e\n]")
_CODE = "(needs --policy code)"


def clean_text_reason(src: str, what: str = "line") -> str | None:
    """None if `src` is only printable ASCII and "\\n", else which character is where."""
    m = _UNCLEAN.search(src)
    if m is None:
        return None
    ch, line = m.group(), src.count("\n", 0, m.start()) + 1
    kind = "control character" if ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f else "non-ASCII character"
    return f"{what} {line}: {kind} {ch!r} (only printable ASCII and \\n are allowed)"


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
    if mode == "hparams":
        reason = clean_text_reason(new_src) or clean_text_reason(parent_src, "parent train.py line")
        if reason:
            return reason
    try:
        parse_python(new_src)
    except SyntaxError as exc:
        return f"train.py does not parse: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"train.py does not parse: {type(exc).__name__}"
    if mode == "code":
        return None
    old_lines, new_lines = parent_src.split("\n"), new_src.split("\n")
    if len(old_lines) != len(new_lines):
        return f"lines were added or removed {_CODE}"
    try:
        start, end = find_markers(old_lines)
    except ValueError as exc:
        return f"hyperparameter block: {exc}"
    for index, (old, new) in enumerate(zip(old_lines, new_lines)):
        reason = _line_reason(index, old, new, start < index < end, space)
        if reason:
            return reason
    return None


def diff_reason(root_src: str, diff: str, space: dict) -> str | None:
    """The gossip validator's pre-check of a diff whose parent it may not know: None if every line
    the diff shows (context, removed, added) is root-shaped at its place: the target's line, or in
    the block the target's line with only its literal changed (context and added values in bounds).
    Pure: with the parent known, the node applies the diff and runs check_change exactly."""
    reason = clean_text_reason(diff, "diff line")
    if reason:
        return reason
    hunks, reason = parse_diff(diff)
    if reason:
        return reason
    root = split_lines(root_src)
    try:
        start, end = find_markers(root)
    except ValueError as exc:
        return f"the target's hyperparameter block: {exc}"
    for n, hunk in enumerate(hunks, 1):
        olds = [line for op, line in hunk.lines if op != "+"]
        news = [line for op, line in hunk.lines if op != "-"]
        if hunk.new_start != hunk.old_start or len(olds) != len(news):
            return f"hunk {n} adds or removes lines {_CODE}"
        seen = {" ": 0, "-": 0, "+": 0}
        for op, line in hunk.lines:
            old_at, new_at = (hunk.old_start + seen[" "] + seen[side] for side in "-+")
            seen[op] += 1
            for index in {"-": [old_at], "+": [new_at], " ": [old_at, new_at]}[op]:
                reason = _root_shaped(index, line, root, start < index < end, space, values=op != "-")
                if reason:
                    return reason
    return None


def _root_shaped(index: int, line: str, root: list[str], in_block: bool, space: dict, *,
                 values: bool) -> str | None:
    if index >= len(root) or line.endswith("\n") != root[index].endswith("\n"):
        return f"line {index + 1} is not a line of the target's train.py {_CODE}"
    return _line_reason(index, root[index].removesuffix("\n"), line.removesuffix("\n"), in_block, space,
                        values=values)


def _line_reason(index: int, old: str, new: str, in_block: bool, space: dict, *,
                 values: bool = True) -> str | None:
    """Why line `index` may not go from `old` to `new` (texts already known to be clean)."""
    if old == new:
        return None
    where = f"line {index + 1}"
    if not in_block:
        return f"{where} outside the hyperparameter block changed {_CODE}"
    literal_only = f"{where}: only the literal value may change in the hyperparameter block"
    try:
        name, was = parse_line(index, old)
        new_name, now = parse_line(index, new)
    except ValueError:  # a comment or blank line changed, or the new line is not NAME = literal
        return literal_only
    # ASCII only, so parse_line's byte offsets are character offsets
    if new_name != name or old[:was.start] != new[:now.start] or old[was.end:] != new[now.end:]:
        return literal_only
    if values and (now.value != was.value or type(now.value) is not type(was.value)):
        reason = check_value(name, now.value, was.value, space)
        if reason:
            return f"{where}: {reason}"
    return None
