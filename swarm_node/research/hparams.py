"""The hyperparameter block at the top of train.py: read its values, write new ones.

The block sits between two marker lines; each line inside is `NAME = <literal>  # comment`
(blank and comment-only lines are allowed too). Values are str, bool, int or float literals,
parsed with `ast`, never evaluated. Writing replaces only the literal's characters, so spacing
and comments stay as they were.

Lines are split on "\n" only, never with `str.splitlines()`: that also breaks at \r, \x0c, \x85,
\u2028..., so it would see lines that Python, reading the file's bytes, does not (and vice versa).
"""
from __future__ import annotations

import ast
import threading
import math
from dataclasses import dataclass
from decimal import Decimal

START_MARKER = "# --- hyperparameters: proposers edit only the values in this block ---"
END_MARKER = "# --- end hyperparameters ---"
LITERAL_TYPES = (bool, int, float, str)


def read_block(source: str) -> dict:
    """The block's values in source order: NAME -> str | bool | int | float."""
    return {name: entry.value for name, entry in _parse_block(split_lines(source)).items()}


def changed(before: str, after: str) -> dict[str, tuple]:
    """name -> (old, new) for each hyperparameter `after` sets differently from `before` (old None:
    a name `before` lacks). Raises ValueError if either text has no readable block."""
    old, new = read_block(before), read_block(after)
    return {k: (old.get(k), v) for k, v in new.items() if k not in old or old[k] != v}


def changed_names(before: str, after: str) -> dict[str, tuple]:
    """`changed`, or {} when either text has no readable block (nothing we can name changed)."""
    try:
        return changed(before, after)
    except ValueError:
        return {}


def write_block(source: str, changes: dict) -> str:
    """`source` with the literals of the names in `changes` replaced; everything else untouched.

    An int given for a float name is written as a float (4 -> 4.0), so a name keeps its type.
    A name whose new value equals its current one (same type) keeps its text as written.
    Unknown names raise KeyError; values that are not str/bool/int/finite float raise
    TypeError or ValueError."""
    lines = split_lines(source)
    entries = _parse_block(lines)
    unknown = [name for name in changes if name not in entries]
    if unknown:
        raise KeyError(f"not in the hyperparameter block: {', '.join(map(str, unknown))}")
    for name, value in changes.items():
        entry = entries[name]
        if isinstance(entry.value, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is type(entry.value) and value == entry.value:
            continue
        body, newline = _split_newline(lines[entry.line_index])
        raw = body.encode()
        old_text = raw[entry.start:entry.end].decode()
        new_text = format_literal(value, double_quotes=old_text.startswith('"'))
        lines[entry.line_index] = (raw[:entry.start] + new_text.encode() + raw[entry.end:]).decode() + newline
    return "".join(lines)


def format_literal(value, *, double_quotes: bool = False) -> str:
    """Python source for a block value that reads back as exactly `value`.

    Floats come out short: 0.001, 0.95, 1.0 in the plain range, 6e-4 or 1e-5 outside it."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        text = repr(value)
        if double_quotes and text[1:-1] == value and '"' not in value:
            return f'"{value}"'
        return text
    raise TypeError(f"a block value must be str, bool, int or float, not {type(value).__name__}")


def split_lines(source: str) -> list[str]:
    """`source` cut after each "\n" (kept); a last line without one is kept too."""
    parts = source.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@dataclass(frozen=True)
class Entry:
    line_index: int
    start: int  # byte offsets of the literal within the line (without its newline)
    end: int
    value: object


def _parse_block(lines: list[str]) -> dict[str, Entry]:
    start, end = find_markers(lines)
    entries: dict[str, Entry] = {}
    for index in range(start + 1, end):
        body, _ = _split_newline(lines[index])
        stripped = body.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, entry = parse_line(index, body)
        if name in entries:
            raise ValueError(f"line {index + 1}: {name} is assigned twice in the hyperparameter block")
        entries[name] = entry
    return entries


def find_markers(lines: list[str]) -> tuple[int, int]:
    """Indexes of the start and end marker lines; ValueError when they are missing or repeated."""
    starts = [i for i, line in enumerate(lines) if line.strip() == START_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if not starts:
        raise ValueError(f"no hyperparameter block: the start marker line {START_MARKER!r} is missing")
    if not ends:
        raise ValueError(f"no hyperparameter block: the end marker line {END_MARKER!r} is missing")
    if len(starts) > 1 or len(ends) > 1:
        raise ValueError("the hyperparameter block markers appear more than once")
    if ends[0] < starts[0]:
        raise ValueError("the hyperparameter block's end marker comes before its start marker")
    return starts[0], ends[0]


_PARSE_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """ast.parse, one thread at a time: CPython 3.11 before 3.11.8 can fail with "AST constructor
    recursion depth mismatch" when threads parse at once (the replay's agents do)."""
    with _PARSE_LOCK:
        return ast.parse(source)


def parse_line(index: int, body: str) -> tuple[str, Entry]:
    """`NAME = literal  # comment` (line `index`, newline stripped) -> NAME and where its literal is;
    ValueError for anything else."""
    where = f"line {index + 1}"
    indent = len(body) - len(body.lstrip())
    code = body[indent:]
    try:
        tree = parse_python(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"{where}: expected NAME = literal, not valid Python: {body.strip()!r}") from exc
    if (
        len(tree.body) != 1
        or not isinstance(tree.body[0], ast.Assign)
        or len(tree.body[0].targets) != 1
        or not isinstance(tree.body[0].targets[0], ast.Name)
    ):
        raise ValueError(f"{where}: expected NAME = literal, got {body.strip()!r}")
    node = tree.body[0]
    try:
        value = ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"{where}: the value of {node.targets[0].id} is not a literal: {body.strip()!r}") from exc
    if not isinstance(value, LITERAL_TYPES):
        raise ValueError(
            f"{where}: the value of {node.targets[0].id} must be a str, bool, int or float literal,"
            f" not {type(value).__name__}"
        )
    offset = len(body[:indent].encode())  # ast offsets count UTF-8 bytes
    entry = Entry(index, offset + node.value.col_offset, offset + node.value.end_col_offset, value)
    return node.targets[0].id, entry


def _split_newline(line: str) -> tuple[str, str]:
    body = line[:-1] if line.endswith("\n") else line
    body = body[:-1] if body.endswith("\r") else body  # a CRLF file keeps its \r\n
    return body, line[len(body):]


def _format_float(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"a block value must be a finite float, not {x!r}")
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return repr(x)
    sign, digits, exponent = Decimal(repr(x)).as_tuple()  # repr: the shortest exact digits
    power = exponent + len(digits) - 1
    text = "".join(map(str, digits)).rstrip("0") or "0"
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    short = f"{'-' if sign else ''}{mantissa}e{power}"
    return short if float(short) == x else repr(x)
