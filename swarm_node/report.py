"""`swarm-node report`: progress.png (val_bpb per experiment, kept ones as a staircase, like
autoresearch's chart) and report.md (the summary, validation and held-out test side by side)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .credit import changes, changes_from_diff, credit, found  # noqa: E402
from .research.decision import PairedNoise  # noqa: E402
from .research.target import budget_text, describe_bench  # noqa: E402
from .status import DECIDED, HEADS, Status  # noqa: E402

KEPT = HEADS
CREDITED = (Status.KEEP, Status.ADOPTED)  # experiments that moved the head by a change of their own or a peer's
# results.tsv has autoresearch's statuses only: ledger status -> results.tsv status (absent: not listed)
TSV_STATUS = {Status.BASELINE: "keep", Status.ADOPTED: "keep", Status.KEEP: "keep", Status.DISCARD: "discard",
              Status.CRASH: "crash", Status.INTERRUPTED: "crash"}  # autoresearch's three words
TSV_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription"


def draw_progress(experiments: list, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    xs_d, ys_d, steps_x, steps_y, labels = [], [], [], [], []
    best = None
    for i, e in enumerate(experiments):
        if e["val_bpb"] is None:
            continue
        if e["status"] in KEPT and (best is None or e["val_bpb"] < best or e["status"] == Status.BASELINE):
            best = e["val_bpb"]
            steps_x.append(i)
            steps_y.append(best)
            labels.append((i, best, e["description"]))
        else:
            xs_d.append(i)
            ys_d.append(e["val_bpb"])
    crashes = [i for i, e in enumerate(experiments) if e["status"] == Status.CRASH]
    ax.scatter(xs_d, ys_d, s=18, color="#b0b0b0", label="discarded", zorder=2)
    if steps_x:
        sx, sy = steps_x + [len(experiments) - 1], steps_y + [steps_y[-1]]
        ax.step(sx, sy, where="post", color="#2a9d8f", linewidth=2, zorder=3, label="best so far")
        ax.scatter(steps_x, steps_y, s=36, color="#2a9d8f", zorder=4, label="kept")
        for i, y, text in labels[1:]:
            ax.annotate(text[:40], (i, y), textcoords="offset points", xytext=(4, 6), fontsize=7, color="#1d6f65")
    if crashes:
        ax.scatter(crashes, [ax.get_ylim()[1]] * len(crashes), marker="x", color="#e76f51", label="crash", zorder=2)
    ax.set_xlabel("experiment")
    ax.set_ylabel("val_bpb (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def results_rows(experiments) -> list[str]:
    """results.tsv as autoresearch writes it, header first: commit, val_bpb, memory_gb, status
    (keep | discard | crash only), description. From ledger rows (or dicts), in ledger order: the
    baseline is a keep described "baseline", an adoption a keep, an interruption a crash; running
    and refused experiments are not listed."""
    rows = [TSV_HEADER]
    for e in experiments:
        status = TSV_STATUS.get(e["status"])
        if status is None:
            continue
        commit = (e["commit_sha"] or "-------")[:7]
        val = f"{e['val_bpb']:.6f}" if e["val_bpb"] is not None else "0.000000"
        mem = f"{e['memory_gb']:.1f}" if e["memory_gb"] is not None else "0.0"
        desc = "baseline" if e["status"] == Status.BASELINE else e["description"]
        if e["status"] == "interrupted":
            desc += " (interrupted)"
        rows.append(f"{commit}\t{val}\t{mem}\t{status}\t{' '.join(desc.split())}")
    return rows


def write_results_tsv(ledger, path) -> None:
    """results.tsv from the ledger, replaced atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(results_rows(ledger.experiments())) + "\n")
    tmp.replace(path)


def keep_changes(ledger, experiment) -> dict:
    """The hyperparameters a kept experiment changed from its parent: from the two train.py files
    the ledger holds, else from the experiment's diff."""
    parent = ledger.state_source(experiment["parent"]) if experiment["parent"] else None
    source = ledger.state_source(experiment["state"])
    if parent is not None and source is not None:
        try:
            return changes(parent, source)
        except ValueError:
            pass
    return changes_from_diff(experiment["diff"] or "")


def effect_dicts(rows) -> list[dict]:
    """Ledger effect rows as dicts with value and seeds decoded."""
    return [{**dict(r), "value": json.loads(r["value"]), "seeds": json.loads(r["seeds"])} for r in rows]


def credit_markdown(keeps: list[dict], effects: list[dict]) -> list[str]:
    """The report's credit section. `keeps`: dicts with id, status, bench, state, description,
    val_bpb and changes ({name: value}); `effects`: effect_dicts()."""
    lines = ["## What the keeps are credited with", "",
             "Effect: the mean paired improvement in val_bpb a change brings (bits per byte, positive = helps), "
             "over the seeds shown. A technique is credited only by its own paired measurement: a keep that "
             "changed one hyperparameter is that measurement; the parts of a keep that changed several are "
             "credited only once an ablation reverted each in the kept state. |effect| <= 2 SE is no "
             "measurable effect.", ""]
    if not keeps:
        return lines + ["- no keeps yet", ""]
    own = {k["id"]: [e for e in effects if e["bench"] == k["bench"]] for k in keeps}
    for k in keeps:
        val = "" if k["val_bpb"] is None else f", val_bpb {k['val_bpb']:.4f}"
        desc = k["description"].replace("`", "'")
        lines.append(f"- #{k['id']} {k['status']} `{desc}`{val}")
        got = credit(k, own[k["id"]]) or ["no hyperparameter changed"]
        lines += [f"  - {line}" for line in got]
    credited = [label for keep in keeps for _, label, _ in found([keep], own[keep["id"]])]
    credited = list(dict.fromkeys(credited))
    lines += ["", "Techniques credited as found (own paired effect above 2 SE): "
              + (", ".join(credited) if credited else "none yet") + ".", ""]
    return lines


def summary_markdown(experiments: list, bench: dict | None, noise: dict | None,
                     keeps: list[dict] | None = None, effects: list[dict] | None = None) -> str:
    run = [e for e in experiments if e["status"] not in (Status.RUNNING, Status.REFUSED)]
    kept = [e for e in run if e["status"] in KEPT]
    base = next((e for e in run if e["status"] == Status.BASELINE), None)
    best = min(kept, key=lambda e: e["val_bpb"], default=None)
    counts = {s: sum(e["status"] == s for e in experiments)
              for s in (*DECIDED, Status.ADOPTED, Status.REFUSED, Status.INTERRUPTED)}
    lines = ["# swarm-node research report", ""]
    if bench:
        lines += [f"Benchmark: {describe_bench(bench)}.", ""]
    if base and best:
        gain = base["val_bpb"] - best["val_bpb"]
        lines += [f"- Baseline: val_bpb {_fmt(base['val_bpb'])}, test_bpb {_fmt(base['test_bpb'])}",
                  f"- Best: val_bpb {_fmt(best['val_bpb'])}, test_bpb {_fmt(best['test_bpb'])} "
                  f"({best['description']}); improvement {gain:.4f} on validation"
                  + (f", {base['test_bpb'] - best['test_bpb']:.4f} on the held-out test split"
                     if base["test_bpb"] is not None and best["test_bpb"] is not None else "")]
    if noise:
        pooled = PairedNoise(**noise)
        lines.append(f"- Noise: SD of a paired difference {pooled.sd:.4f} ({pooled.df} df pooled over the history, "
                     f"plus a prior of {pooled.prior_sd:.4f} from the baseline's spread across seeds)")
    lines += ["- Experiments: " + ", ".join(f"{k} {v}" for k, v in counts.items()), "",
              "A test value far above its validation value means the validation split is being over-fitted.", "",
              "| # | status | val_bpb | test_bpb | seeds | description | why |", "|---|---|---|---|---|---|---|"]
    for e in experiments:
        why = (e["reason"] or "").replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {e['id']} | {e['status']} | {_fmt(e['val_bpb'])} | {_fmt(e['test_bpb'])} | "
                     f"{e['seeds']} | {e['description'].replace('|', '/')} | {why} |")
    if keeps is not None:
        lines += [""] + credit_markdown(keeps, effects or [])
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(ledger, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    experiments = [dict(e) for e in ledger.experiments()]
    bench = ledger.get_meta("bench")
    title = "swarm-node: val_bpb per experiment"
    if bench:
        title += f" ({bench['target']}, {bench['tier']} tier, {budget_text(bench)} budget)"
    png, md = out / "progress.png", out / "report.md"
    draw_progress([e for e in experiments if e["status"] not in (Status.RUNNING, Status.REFUSED)], png, title)
    keeps = [{**e, "changes": keep_changes(ledger, e)} for e in experiments if e["status"] in CREDITED]
    md.write_text(summary_markdown(experiments, bench, ledger.get_meta("noise"), keeps,
                                   effect_dicts(ledger.effects())))
    return png, md
