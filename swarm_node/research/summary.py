"""autoresearch's summary block: what a training run prints last (pure Python, no trio)."""
from __future__ import annotations

import math

# Counts, parsed as exact integers: a large run's FLOPs (5e16) are past float64's exact range.
INTEGER_KEYS = ("num_steps", "train_flops")


def parse_summary(output: str) -> dict[str, float | int] | None:
    """The `key: value` lines after the last `---` line, autoresearch's summary block: numbers only
    (INTEGER_KEYS as ints, the rest as floats); None without a finite val_bpb."""
    lines = output.splitlines()
    try:
        start = len(lines) - 1 - lines[::-1].index("---")
    except ValueError:
        return None
    summary: dict[str, float | int] = {}
    for line in lines[start + 1:]:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        try:
            summary[key] = _integer(value) if key in INTEGER_KEYS else float(value)
        except ValueError:
            continue
    if not all(math.isfinite(summary.get(k, math.nan)) for k in ("val_bpb",)):
        return None
    return summary


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        number = float(value)  # "10.0", "5e11"
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"not a whole number: {value!r}") from None
        return int(number)
