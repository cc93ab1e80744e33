"""Credit for kept changes: a technique counts as found only when its own paired effect was measured.

A keep that changed one hyperparameter is its own measurement (kind 'single': the keep's paired
decision). A keep that changed several is a combined change: each part is credited only once an
ablation (that name reverted in the kept state, paired over seeds; kind 'ablation') measured it.
A diff that mentions a technique credits nothing.

`effect` is the mean paired improvement in val_bpb the change brings (bits per byte, positive =
helps); `se` its standard error. |effect| <= 2 se reads as "no measurable effect".
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Mapping

from .research.hparams import changed, parse_line

# (hyperparameter, value) -> readable technique: the one table of known techniques.
TECHNIQUES = {
    ("INIT", "kaiming"): "Kaiming init",
    ("INIT", "xavier"): "Xavier init",
    ("INIT", "normal"): "GPT-2 normal init",
    ("NORM", "rmsnorm"): "RMSNorm",
    ("NORM", "layernorm"): "LayerNorm",
    ("TIE_EMBEDDINGS", True): "tied embeddings",
    ("TIE_EMBEDDINGS", False): "untied embeddings",
    ("ACTIVATION", "silu"): "SiLU activation",
    ("ACTIVATION", "gelu"): "GELU activation",
    ("ACTIVATION", "relu"): "ReLU activation",
    ("LR_SCHEDULE", "cosine"): "cosine LR decay",
    ("LR_SCHEDULE", "linear"): "linear LR decay",
    ("LR_SCHEDULE", "constant"): "constant LR",
    ("WARMUP_STEPS", 0): "no warmup",
    ("GRAD_CLIP", 0): "no gradient clipping",
    ("DROPOUT", 0): "no dropout",
}
# Hyperparameters whose value is the technique: "learning rate 0.006".
NAMES = {
    "LEARNING_RATE": "learning rate", "WARMUP_STEPS": "warmup steps", "WEIGHT_DECAY": "weight decay",
    "GRAD_CLIP": "gradient clipping at", "BATCH_SIZE": "batch size", "SEQ_LEN": "sequence length",
    "N_LAYER": "layers", "N_EMBD": "width", "N_HEAD": "heads", "DROPOUT": "dropout",
}
_BLOCK_LINE = re.compile(r"^\+[A-Z][A-Z0-9_]*\s*=")  # '+NAME = literal' (not '+++', not indented code)


def technique(name: str, value) -> str:
    """('NORM', 'rmsnorm') -> 'RMSNorm'; ('LEARNING_RATE', 0.006) -> 'learning rate 0.006'."""
    try:
        return TECHNIQUES[(name, value)]
    except (KeyError, TypeError):
        pass
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{NAMES[name]} {shown}" if name in NAMES else f"{name} = {shown}"


def changes(parent_source: str, source: str) -> dict:
    """The hyperparameters `source` sets differently from `parent_source`, with their new values."""
    return {k: new for k, (_, new) in changed(parent_source, source).items()}


def changes_from_diff(diff: str) -> dict:
    """The hyperparameters a unified diff of train.py sets (its '+NAME = literal' lines): what
    changed, never what it is worth."""
    out = {}
    for line in diff.split("\n"):
        if not _BLOCK_LINE.match(line):
            continue
        try:
            name, entry = parse_line(0, line[1:])
        except ValueError:
            continue
        out[name] = entry.value
    return out


def _field(m: Mapping, key: str):
    try:
        return m[key]
    except (KeyError, IndexError):  # a dict, or an sqlite3.Row, without it
        return None


def _seeds(seeds) -> list | None:
    return json.loads(seeds) if isinstance(seeds, str) else (None if seeds is None else list(seeds))


def measured(effect: Mapping) -> bool:
    return abs(effect["effect"]) > 2 * effect["se"]


def effect_line(label: str, effect: Mapping) -> str:
    """'RMSNorm: +0.0123 bpb (paired, ablation over seeds [0, 1], SE 0.0031)'."""
    how = "ablation" if effect["kind"] == "ablation" else "single change"
    seeds = _seeds(_field(effect, "seeds"))
    detail = f"paired, {how}" + ("" if seeds is None else f" over seeds {seeds}") + f", SE {effect['se']:.4f}"
    if not measured(effect):
        return f"{label}: no measurable effect ({effect['effect']:+.4f} bpb; {detail})"
    return f"{label}: {effect['effect']:+.4f} bpb ({detail})"


def credit(keep: Mapping, effects: Iterable[Mapping]) -> list[str]:
    """Lines crediting one keep. `keep`: {'state', 'changes': {name: value}}; `effects`: mappings
    with state, name, effect, se, seeds, kind (only those of this keep's state are used; the last
    one of a name wins)."""
    by_name = {e["name"]: e for e in effects if e["state"] == keep["state"]}
    changed = dict(keep["changes"])
    lines, unmeasured = [], []
    for name, value in changed.items():
        label = technique(name, value)
        if name in by_name:
            lines.append(effect_line(label, by_name[name]))
        else:
            unmeasured.append(label)
    if unmeasured:
        if len(changed) == 1:
            lines.append(f"{unmeasured[0]}: kept as a single change, effect not recorded")
        else:
            lines.append(f"{', '.join(unmeasured)}: combined, not ablated")
    return lines


def credit_lines(keeps: Iterable[Mapping], effects: Iterable[Mapping]) -> list[str]:
    """credit() of every keep, in order."""
    effects = list(effects)
    return [line for keep in keeps for line in credit(keep, effects)]


def found(keeps: Iterable[Mapping], effects: Iterable[Mapping]) -> list[tuple[Mapping, str, Mapping]]:
    """(keep, technique, effect) for each change whose own paired effect helped beyond 2 SE, first
    keep first, each technique once."""
    effects = list(effects)
    out, seen = [], set()
    for keep in keeps:
        by_name = {e["name"]: e for e in effects if e["state"] == keep["state"]}
        for name, value in keep["changes"].items():
            e = by_name.get(name)
            label = technique(name, value)
            if e is not None and measured(e) and e["effect"] > 0 and label not in seen:
                seen.add(label)
                out.append((keep, label, e))
    return out
