"""`swarm-node report`: progress.png (val_bpb per experiment, kept ones as a staircase, like
autoresearch's chart) and report.md (the summary, validation and held-out test side by side)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEPT = ("baseline", "keep", "adopted")


def draw_progress(experiments: list, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    xs_d, ys_d, steps_x, steps_y, labels = [], [], [], [], []
    best = None
    for i, e in enumerate(experiments):
        if e["val_bpb"] is None:
            continue
        if e["status"] in KEPT and (best is None or e["val_bpb"] < best or e["status"] == "baseline"):
            best = e["val_bpb"]
            steps_x.append(i)
            steps_y.append(best)
            labels.append((i, best, e["description"]))
        else:
            xs_d.append(i)
            ys_d.append(e["val_bpb"])
    crashes = [i for i, e in enumerate(experiments) if e["status"] == "crash"]
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


def summary_markdown(experiments: list, bench: dict | None, noise: dict | None) -> str:
    run = [e for e in experiments if e["status"] not in ("running", "refused")]
    kept = [e for e in run if e["status"] in KEPT]
    base = next((e for e in run if e["status"] == "baseline"), None)
    best = min(kept, key=lambda e: e["val_bpb"], default=None)
    counts = {s: sum(e["status"] == s for e in experiments)
              for s in ("keep", "discard", "crash", "adopted", "refused", "interrupted")}
    lines = ["# swarm-node research report", ""]
    if bench:
        lines += [f"Benchmark: target `{bench['target']}`, corpus sha256 `{bench['corpus'][:16]}…`, "
                  f"budget {bench['budget']} s, tier `{bench['tier']}`.", ""]
    if base and best:
        gain = base["val_bpb"] - best["val_bpb"]
        lines += [f"- Baseline: val_bpb {_fmt(base['val_bpb'])}, test_bpb {_fmt(base['test_bpb'])}",
                  f"- Best: val_bpb {_fmt(best['val_bpb'])}, test_bpb {_fmt(best['test_bpb'])} "
                  f"({best['description']}); improvement {gain:.4f} on validation"
                  + (f", {base['test_bpb'] - best['test_bpb']:.4f} on the held-out test split"
                     if base["test_bpb"] is not None and best["test_bpb"] is not None else "")]
    if noise:
        lines.append(f"- Noise: sigma {noise['sigma']:.4f} from the baseline's seeds {noise.get('values')}")
    lines += ["- Experiments: " + ", ".join(f"{k} {v}" for k, v in counts.items()), "",
              "A test value far above its validation value means the validation split is being over-fitted.", "",
              "| # | status | val_bpb | test_bpb | seeds | description | why |", "|---|---|---|---|---|---|---|"]
    for e in experiments:
        why = (e["reason"] or "").replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {e['id']} | {e['status']} | {_fmt(e['val_bpb'])} | {_fmt(e['test_bpb'])} | "
                     f"{e['seeds']} | {e['description'].replace('|', '/')} | {why} |")
    return "\n".join(lines) + "\n"


def write_report(ledger, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    experiments = [dict(e) for e in ledger.experiments()]
    bench = ledger.get_meta("bench")
    title = "swarm-node: val_bpb per experiment"
    if bench:
        title += f" ({bench['target']}, {bench['tier']} tier, {bench['budget']} s budget)"
    png, md = out / "progress.png", out / "report.md"
    draw_progress([e for e in experiments if e["status"] not in ("running", "refused")], png, title)
    md.write_text(summary_markdown(experiments, bench, ledger.get_meta("noise")))
    return png, md
