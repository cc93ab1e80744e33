"""The solo loop end to end through the CLI: real subprocesses, real git, real SQLite."""
import signal
import subprocess

import trio

from swarm_node.research.proposers.base import Proposal
from swarm_node.research.setup import Options, setup
from swarm_node.research.workspace import Workspace
from swarm_node.testing import ledger_rows, start_cli, stop_process, toy_target, wait_for

from conftest import TOY_TARGET, swarm_node

TOY = ["--target", str(TOY_TARGET), "--tier", "cpu", "--max-seconds", "3", "--memory-limit", "2"]


def test_crashes_hangs_and_memory_hogs_are_recorded_and_the_loop_carries_on(tmp_path):
    home = tmp_path / "home"
    proc = swarm_node("run", "--solo", *TOY, "--max-experiments", "9", home=home)
    rows = ledger_rows(home, "SELECT description, status, reason FROM experiments ORDER BY id")
    by_desc = {r["description"]: r for r in rows}
    xavier = next(r for d, r in by_desc.items() if "-> 'xavier'" in d)
    assert xavier["status"] == "crash" and "too slow for this tier" in xavier["reason"]
    relu = next(r for d, r in by_desc.items() if "-> 'relu'" in d)
    silu = next(r for d, r in by_desc.items() if "-> 'silu'" in d)
    assert relu["status"] == "crash" and "toy crash" in relu["reason"]
    assert silu["status"] == "crash" and "out of memory" in silu["reason"]
    kept = [r["description"] for r in rows if r["status"] == "keep"]
    assert "INIT 'normal' -> 'kaiming'" in kept and "NORM 'layernorm' -> 'rmsnorm'" in kept
    assert len([r for r in rows if r["status"] != "baseline"]) == 9
    tsv = (home / "results.tsv").read_text().splitlines()
    assert tsv[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and len(tsv) == 11
    assert "crash" in proc.stdout and "done: best val_bpb" in proc.stdout
    log = subprocess.run(["git", "log", "--format=%s"], cwd=home / "workspace", capture_output=True,
                         text=True).stdout.splitlines()
    assert log[-1] == "baseline" and set(log[:-1]) <= set(kept)


def test_kill_9_during_an_experiment_then_resume(tmp_path):
    home = tmp_path / "home"
    slow = toy_target(tmp_path / "toy_target", 1.5)
    args = [a if a != str(TOY_TARGET) else str(slow) for a in TOY]
    swarm_node("run", "--solo", *args, "--max-experiments", "1", home=home)
    proc = start_cli("run", "--solo", *args, "--max-experiments", "3", log=tmp_path / "run.log", home=home)
    try:
        wait_for(lambda: ledger_rows(home, "SELECT id FROM runs WHERE status = 'running'"), 60, "no run started",
                 poll=0.2)
        before = ledger_rows(home, "SELECT * FROM experiments WHERE status != 'running' ORDER BY id")
    finally:
        stop_process(proc, signal.SIGKILL)
    swarm_node("run", "--solo", *args, "--max-experiments", "2", home=home)
    after = ledger_rows(home, "SELECT * FROM experiments ORDER BY id")
    assert after[:len(before)] == before  # nothing recorded was lost or changed
    statuses = [r["status"] for r in after]
    assert statuses.count("baseline") == 1 and statuses.count("interrupted") == 1
    assert "running" not in statuses
    assert ledger_rows(home, "SELECT COUNT(*) AS n FROM runs WHERE status = 'running'")[0]["n"] == 0
    assert len(statuses) == len(before) + 1 + 2  # the interrupted one, then two new experiments
    states = [r["state"] for r in after if r["status"] in ("keep", "discard", "crash", "baseline")]
    assert len(states) == len(set(states))  # no state measured twice
    tsv = (home / "results.tsv").read_text().splitlines()[1:]
    assert len(tsv) == len(after)


class CodeSneaker:
    """A proposer that tries to change code outside the hyperparameter block."""
    name = "sneaky"

    def propose(self, ctx):
        return Proposal(ctx.head_source.replace("import math", "import math\nimport shutil; shutil.rmtree('/')"),
                        "sneak in some code")


def test_a_proposal_that_breaks_the_policy_is_refused_and_never_run(tmp_path):
    research = setup(Options(home=str(tmp_path / "home"), target=str(TOY_TARGET), tier="cpu", budget=1))
    loop = research.loop
    loop.proposers = [CodeSneaker(), *loop.proposers]

    async def main():
        await loop.prepare(research.target.dir, research.tier.baseline)
        return await loop.step()

    record = trio.run(main)
    assert record.status in ("keep", "discard")  # the next proposer's experiment ran instead
    refused = ledger_rows(tmp_path / "home", "SELECT * FROM experiments WHERE status = 'refused'")
    assert len(refused) >= 1
    assert "needs --policy code" in refused[0]["reason"]
    runs = ledger_rows(tmp_path / "home", "SELECT * FROM runs WHERE experiment_id = ?", (refused[0]["id"],))
    assert runs == []
    assert "shutil" not in Workspace(tmp_path / "home" / "workspace").read_train()


def test_a_home_used_for_another_benchmark_is_refused_with_the_fix(tmp_path):
    home = tmp_path / "home"
    swarm_node("run", "--solo", *TOY, "--max-experiments", "1", home=home)
    proc = swarm_node("run", "--solo", *TOY[:-6], "--budget", "2", "--max-experiments", "1", home=home, check=False)
    assert proc.returncode == 2
    assert "another benchmark" in proc.stderr and "SWARM_NODE_HOME" in proc.stderr


def test_report_draws_progress_png_and_a_summary(tmp_path):
    home = tmp_path / "home"
    swarm_node("run", "--solo", *TOY, "--max-experiments", "4", home=home)
    swarm_node("report", home=home)
    png = (home / "progress.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    md = (home / "report.md").read_text()
    assert "| keep |" in md and "test_bpb" in md and "Baseline: val_bpb" in md


def test_claims_and_results_on_every_reachable_state_never_leave_the_loop_idle(tmp_path):
    """A peer that claims (or reports) everything the proposers could try buys nothing: the loop
    proposes as if it had not heard them rather than wait."""
    from swarm_node.assets import load_config
    from swarm_node.research.hparams import read_block, write_block
    from swarm_node.research.proposers.heuristic import grid_by_distance
    from swarm_node.messages import state_hash

    research = setup(Options(home=str(tmp_path / "home"), target=str(TOY_TARGET), tier="cpu", budget=1))
    loop = research.loop
    loop.proposers = [p for p in loop.proposers if p.name == "heuristic"]  # it can reach only these states
    space = load_config("search_space")

    async def main():
        await loop.prepare(research.target.dir)
        head = loop.workspace.read_train()
        reachable = {state_hash(write_block(head, {name: value}))
                     for name, current in read_block(head).items() if name in space
                     for value in grid_by_distance(name, current, space)}
        for i, state in enumerate(sorted(reachable)):
            loop.hearsay.claims.add(f"squatter-{i % 50}", state)
        loop.hearsay.measured |= reachable
        return await loop.step()

    record = trio.run(main)
    assert record is not None and record.status in ("keep", "discard", "crash")


def test_peers_claims_and_results_outlive_a_restart_until_they_expire(tmp_path):
    """What peers said about states of our key is in the ledger: a restarted node still skips the
    states they measured and, until each claim expires, the states they claimed."""
    opts = Options(home=str(tmp_path / "home"), target=str(TOY_TARGET), tier="cpu", budget=1)
    first = setup(opts)
    bench, ledger = first.bench, first.ledger
    ledger.record_foreign_state(state="m" * 64, bench=bench, author="peer", kind="result", status="discard",
                                val_bpb=2.5)
    ledger.record_foreign_state(state="c" * 64, bench=bench, author="peer", kind="claim")
    ledger.record_foreign_state(state="old" + "c" * 61, bench=bench, author="peer", kind="claim")
    ttl = first.loop.hearsay.claims.ttl_s
    with ledger.transaction() as tx:  # heard longer ago than a claim lasts
        tx.execute("UPDATE foreign_states SET ts = ts - ? WHERE state LIKE 'old%'", (ttl + 1,))
    other = bench.model_copy(update={"tier": "gpu-large"})
    ledger.record_foreign_state(state="x" * 64, bench=other, author="peer", kind="claim")  # another key's

    again = setup(opts).loop.hearsay
    assert again.measured == {"m" * 64}  # a claim is not a measurement
    assert again.claims.live() == {"c" * 64}
