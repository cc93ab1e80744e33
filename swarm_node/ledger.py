"""The node's memory: one SQLite file under SWARM_NODE_HOME.

Every experiment is written as `running` before it starts and finished in one transaction after,
so a kill -9 leaves at most one `running` row, which the next start marks `interrupted`:
nothing recorded is lost and nothing is counted twice. results.tsv is derived from this file.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS states (
    hash TEXT PRIMARY KEY, train_py TEXT NOT NULL, parent TEXT, author TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL, parent TEXT, description TEXT NOT NULL, proposer TEXT NOT NULL,
    diff TEXT NOT NULL DEFAULT '', tier TEXT NOT NULL, bench TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | baseline | keep | discard | crash | interrupted | adopted | refused
    reason TEXT NOT NULL DEFAULT '', -- why: crash tail summary, refused adoption, interruption
    val_bpb REAL, test_bpb REAL, memory_gb REAL, seeds TEXT NOT NULL DEFAULT '[]',
    commit_sha TEXT, source TEXT NOT NULL DEFAULT 'local',  -- 'local' or the discovery it came from
    started_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    seed INTEGER NOT NULL, status TEXT NOT NULL,  -- running | ok | crash | interrupted
    val_bpb REAL, test_bpb REAL, training_seconds REAL, total_seconds REAL, wall_seconds REAL,
    peak_memory_mb REAL, num_steps INTEGER, params_m REAL, tokens_per_second REAL,
    output_tail TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL, finished_at REAL);
CREATE INDEX IF NOT EXISTS experiments_state ON experiments(state);
"""

FINISHED = ("baseline", "keep", "discard", "crash", "adopted", "refused")


class Ledger:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        # One connection shared by trio's worker threads, serialised by a lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- meta: small named values (head, noise, identity of the bench) -------------------------

    def get_meta(self, key: str, default=None):
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value, db=None) -> None:
        sql, args = "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    # --- states: every train.py the node has seen, by sha256 -----------------------------------

    def add_state(self, state: str, train_py: str, parent: str | None, author: str, db=None) -> None:
        sql = "INSERT OR IGNORE INTO states(hash, train_py, parent, author, created_at) VALUES (?,?,?,?,?)"
        args = (state, train_py, parent, author, time.time())
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    def state_source(self, state: str) -> str | None:
        rows = self.query("SELECT train_py FROM states WHERE hash = ?", (state,))
        return rows[0]["train_py"] if rows else None

    def measured_states(self) -> set[str]:
        return {r["state"] for r in self.query(
            "SELECT DISTINCT state FROM experiments WHERE status IN (%s)" % ",".join("?" * len(FINISHED)),
            FINISHED)}

    # --- experiments and their runs -------------------------------------------------------------

    def start_experiment(self, *, state: str, parent: str | None, description: str, proposer: str,
                         diff: str, tier: str, bench: str, commit_sha: str | None,
                         source: str = "local") -> int:
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO experiments(state, parent, description, proposer, diff, tier, bench, status,"
                " commit_sha, source, started_at) VALUES (?,?,?,?,?,?,?, 'running', ?,?,?)",
                (state, parent, description, proposer, diff, tier, bench, commit_sha, source, time.time()))
            return cur.lastrowid

    def start_run(self, experiment_id: int, seed: int) -> int:
        with self.transaction() as tx:
            return tx.execute("INSERT INTO runs(experiment_id, seed, status, started_at) VALUES (?,?, 'running', ?)",
                              (experiment_id, seed, time.time())).lastrowid

    def finish_run(self, run_id: int, outcome) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE runs SET status=?, val_bpb=?, test_bpb=?, training_seconds=?, total_seconds=?,"
                " wall_seconds=?, peak_memory_mb=?, num_steps=?, params_m=?, tokens_per_second=?,"
                " output_tail=?, finished_at=? WHERE id=?",
                (outcome.status, outcome.val_bpb, outcome.test_bpb, outcome.training_seconds,
                 outcome.total_seconds, outcome.wall_seconds, outcome.peak_memory_mb, outcome.num_steps,
                 outcome.params_m, outcome.tokens_per_second, outcome.output_tail, time.time(), run_id))

    def finish_experiment(self, experiment_id: int, *, status: str, val_bpb: float | None,
                          test_bpb: float | None, memory_gb: float | None, seeds: list[int],
                          reason: str = "", meta: dict | None = None) -> None:
        """Close an experiment and, in the same transaction, move the node's head if it changed."""
        with self.transaction() as tx:
            tx.execute("UPDATE experiments SET status=?, val_bpb=?, test_bpb=?, memory_gb=?, seeds=?,"
                       " reason=?, finished_at=? WHERE id=?",
                       (status, val_bpb, test_bpb, memory_gb, json.dumps(seeds), reason, time.time(),
                        experiment_id))
            for key, value in (meta or {}).items():
                self.set_meta(key, value, db=tx)

    def recover_interrupted(self) -> int:
        """Mark what a killed process left `running` as interrupted; returns how many experiments."""
        now = time.time()
        with self.transaction() as tx:
            tx.execute("UPDATE runs SET status='interrupted', finished_at=? WHERE status='running'", (now,))
            return tx.execute("UPDATE experiments SET status='interrupted', finished_at=?,"
                              " reason='process stopped during the experiment' WHERE status='running'",
                              (now,)).rowcount

    def experiments(self, limit: int | None = None) -> list[sqlite3.Row]:
        sql = "SELECT * FROM experiments ORDER BY id"
        if limit:
            sql = f"SELECT * FROM (SELECT * FROM experiments ORDER BY id DESC LIMIT {int(limit)}) ORDER BY id"
        return self.query(sql)

    def runs(self, experiment_id: int | None = None) -> list[sqlite3.Row]:
        if experiment_id is None:
            return self.query("SELECT * FROM runs ORDER BY id")
        return self.query("SELECT * FROM runs WHERE experiment_id = ? ORDER BY id", (experiment_id,))

    def counters(self) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) AS n FROM experiments GROUP BY status")
        return {r["status"]: r["n"] for r in rows}
