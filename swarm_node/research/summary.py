"""autoresearch's summary block: what a training run prints last (pure Python, no trio)."""
from __future__ import annotations

import math


def parse_summary(output: str) -> dict[str, float] | None:
    """The `key: value` lines after the last `---` line, autoresearch's summary block."""
    lines = output.splitlines()
    try:
        start = len(lines) - 1 - lines[::-1].index("---")
    except ValueError:
        return None
    summary: dict[str, float] = {}
    for line in lines[start + 1:]:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            summary[key.strip()] = float(value.strip())
        except ValueError:
            continue
    if not all(math.isfinite(summary.get(k, math.nan)) for k in ("val_bpb",)):
        return None
    return summary
