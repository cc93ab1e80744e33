"""The table oracle: answers a training run from the measured table instead of training.

Runs are reproducible, so a run of a configuration with seed s returns exactly that row's
measured seed s (a seed the table lacks is a crash), and costs the agent its tier's run time,
scaled by how long that configuration really took to train compared with the other rows measured
on the same machine (a grown grid is measured where it is run, and a slower machine must not make
its rows look like slower configurations).
"""
from __future__ import annotations

import statistics

from ..research.hparams import read_block
from ..research.runner import RunOutcome


class TableOracle:
    """One tier's table: `table` is the whole file, `tier` names the part this oracle answers from."""

    def __init__(self, table: dict, tier: str):
        if tier not in table["tiers"]:
            raise ValueError(f"the table has no tier {tier!r} (it has {', '.join(table['tiers'])}): measure it with "
                             f"`swarm-node bench-table --tier {tier}`, or give the scenario's group a measured tier")
        self.tier = tier
        self.table = table["tiers"][tier]
        self.grid_names = list(table["grid"])
        self.rows = {self._key(r["config"]): r for r in self.table["rows"]}
        self.mean_training: dict[str, float] = {}  # state -> mean training s of the rows of its machine
        for session in self.table.get("sessions") or [{"states": [r["state"] for r in self.table["rows"]]}]:
            members = [r for r in self.table["rows"] if r["state"] in set(session["states"])]
            if members:
                mean = statistics.fmean(float(s["training_seconds"]) for r in members for s in r["seeds"].values())
                for r in members:
                    self.mean_training.setdefault(r["state"], mean)

    def _key(self, config: dict) -> tuple:
        return tuple((n, type(config[n]).__name__, config[n]) for n in self.grid_names)

    def lookup(self, hparams: dict) -> dict | None:
        """The table row of a train.py's hyperparameters, or None if the table never measured it."""
        if any(hparams.get(k) != v for k, v in self.table["base"].items()):
            return None
        try:
            return self.rows.get(self._key(hparams))
        except KeyError:
            return None

    def answer(self, hparams: dict, seed: int) -> tuple[dict | None, str]:
        """The measured values of (configuration, seed), or None and why not."""
        row = self.lookup(hparams)
        if row is None:
            return None, "configuration not in the measured table"
        values = row["seeds"].get(str(seed))
        if values is None:
            return None, f"seed {seed} not measured in the table (it has {sorted(row['seeds'], key=int)})"
        return values, row["state"]

    def relative_time(self, row_state: str, values: dict) -> float:
        """How long this run trained, relative to the mean of the rows measured on its machine."""
        return float(values["training_seconds"]) / self.mean_training[row_state]

    @property
    def budget_flops(self) -> int:
        return int(self.table["budget_flops"])


class OracleRunner:
    """The replay agent's runner: same interface as SubprocessRunner.measure."""

    def __init__(self, oracle: TableOracle, clock, agent: str, experiment_seconds: float, counter: list):
        self.oracle = oracle
        self.counter = counter  # one list for the night: a training run appends 1
        self.clock = clock
        self.agent = agent
        self.experiment_seconds = experiment_seconds

    async def measure(self, train_py: str, seed: int) -> RunOutcome:
        values, row_state = self.oracle.answer(read_block(train_py), seed)
        if values is None:
            await self.clock.spend(self.agent, self.experiment_seconds)
            return RunOutcome(status="crash", reason=row_state)
        cost = self.experiment_seconds * self.oracle.relative_time(row_state, values)
        await self.clock.spend(self.agent, cost)
        self.counter.append(1)
        return RunOutcome(status="ok", val_bpb=float(values["val_bpb"]), test_bpb=float(values["test_bpb"]),
                          training_seconds=cost, total_seconds=cost, wall_seconds=0.0, peak_memory_mb=0.0,
                          num_steps=int(values["num_steps"]), output_tail=f"table row, seed {seed}")
