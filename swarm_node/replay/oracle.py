"""The table oracle: answers a training run from the measured table instead of training.

A run of a configuration returns one measured seed's values (which one is fixed by the replay's
seed, the agent and the state, so a confirmation run gets the other seed) and costs the agent
its tier's experiment time, scaled by how long that configuration really took to train compared
with the other rows measured on the same machine (a grown grid is measured where it is run, and
a slower machine must not make its rows look like slower configurations).
"""
from __future__ import annotations

import hashlib
import statistics

from ..research.hparams import read_block
from ..research.runner import RunOutcome


class TableOracle:
    def __init__(self, table: dict, replay_seed: int):
        self.table = table
        self.replay_seed = replay_seed
        self.grid_names = list(table["grid"])
        self.rows = {self._key(r["config"]): r for r in table["rows"]}
        self.mean_training: dict[str, float] = {}  # state -> mean training s of the rows of its machine
        for session in table.get("sessions") or [{"states": [r["state"] for r in table["rows"]]}]:
            members = [r for r in table["rows"] if r["state"] in set(session["states"])]
            if members:
                mean = statistics.fmean(float(s["training_seconds"]) for r in members for s in r["seeds"].values())
                for r in members:
                    self.mean_training.setdefault(r["state"], mean)
        self.runs = 0

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

    def answer(self, agent: str, state: str, seed: int, hparams: dict) -> tuple[dict | None, int | None, float]:
        """One measured seed's values, that seed, and the run's time relative to its machine's mean."""
        row = self.lookup(hparams)
        if row is None:
            return None, None, 1.0
        seeds = sorted(row["seeds"], key=int)
        digest = hashlib.sha256(f"{self.replay_seed}/{agent}/{state}".encode()).digest()
        chosen = seeds[(digest[0] + seed) % len(seeds)]
        values = row["seeds"][chosen]
        return values, int(chosen), float(values["training_seconds"]) / self.mean_training[row["state"]]


class OracleRunner:
    """The replay agent's runner: same interface as SubprocessRunner.measure."""

    def __init__(self, oracle: TableOracle, clock, agent: str, experiment_seconds: float):
        self.oracle = oracle
        self.clock = clock
        self.agent = agent
        self.experiment_seconds = experiment_seconds

    async def measure(self, train_py: str, seed: int) -> RunOutcome:
        from ..research.workspace import state_hash
        values, measured_seed, relative_time = self.oracle.answer(self.agent, state_hash(train_py), seed,
                                                                  read_block(train_py))
        if values is None:
            await self.clock.spend(self.agent, self.experiment_seconds)
            return RunOutcome(status="crash", reason="configuration not in the measured table")
        cost = self.experiment_seconds * relative_time
        await self.clock.spend(self.agent, cost)
        self.oracle.runs += 1
        return RunOutcome(status="ok", val_bpb=float(values["val_bpb"]), test_bpb=float(values["test_bpb"]),
                          training_seconds=cost, total_seconds=cost, wall_seconds=0.0, peak_memory_mb=0.0,
                          num_steps=int(values["num_steps"]),
                          output_tail=f"table row, measured seed {measured_seed}")
