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

from .messages import BenchKey
from .status import Status

MAX_CLAIM_ROWS = 4096  # peers' claims remembered across a restart (research/hearsay.py holds as many live)

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
    commit_sha TEXT, origin TEXT NOT NULL DEFAULT 'local',  -- 'local' or the discovery it came from
    started_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    seed INTEGER NOT NULL, status TEXT NOT NULL,  -- running | ok | crash | interrupted
    val_bpb REAL, test_bpb REAL, training_seconds REAL, total_seconds REAL, wall_seconds REAL,
    peak_memory_mb REAL, num_steps INTEGER, params_m REAL, tokens_per_second REAL,
    output_tail TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL, finished_at REAL);
CREATE INDEX IF NOT EXISTS experiments_state ON experiments(state);

-- What the swarm told this node. Every table is keyed so that a re-delivered message changes nothing.
CREATE TABLE IF NOT EXISTS peers (
    peer TEXT PRIMARY KEY, tier TEXT, role TEXT, hardware TEXT, head TEXT, head_val_bpb REAL,
    addrs TEXT, version TEXT, counters TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    failed_verifications INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS discoveries (       -- one per tier and state: a train.py can win in two tiers
    state TEXT NOT NULL, bench TEXT NOT NULL, tier TEXT NOT NULL, author TEXT NOT NULL,
    parent TEXT NOT NULL, diff TEXT NOT NULL, val_bpb REAL NOT NULL, test_bpb REAL, seeds TEXT NOT NULL,  -- [[seed, val, test], ...]
    noise REAL NOT NULL, description TEXT NOT NULL, created_ts REAL NOT NULL,
    first_received_at REAL NOT NULL, first_from TEXT NOT NULL, PRIMARY KEY (tier, state));
CREATE TABLE IF NOT EXISTS receipts (            -- every copy of a discovery that reached this node
    message_id TEXT PRIMARY KEY, state TEXT NOT NULL, from_peer TEXT NOT NULL, received_at REAL NOT NULL,
    tier TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS adoptions (           -- this node's and its peers' adoptions
    peer TEXT NOT NULL, discovery_state TEXT NOT NULL, state TEXT NOT NULL, val_bpb REAL,
    verified INTEGER NOT NULL, ts REAL NOT NULL, received_at REAL NOT NULL, from_peer TEXT NOT NULL,
    PRIMARY KEY (peer, discovery_state));
CREATE TABLE IF NOT EXISTS best (                -- the monotone register: best state per benchmark key,
    bench TEXT PRIMARY KEY, tier TEXT NOT NULL,  -- only what this node measured or verified itself
    state TEXT NOT NULL, val_bpb REAL NOT NULL, test_bpb REAL, author TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS foreign_states (      -- states peers claimed or measured: not measured again
    state TEXT NOT NULL, bench TEXT NOT NULL, author TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT, val_bpb REAL, ts REAL NOT NULL, PRIMARY KEY (state, bench, author, kind));
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS effects (           -- what one hyperparameter of a kept state is worth, paired:
    bench TEXT NOT NULL, state TEXT NOT NULL, parent TEXT, name TEXT NOT NULL,
    value TEXT NOT NULL,                        -- json
    effect REAL NOT NULL,                       -- mean paired improvement it brings, bpb, positive = helps
    se REAL NOT NULL, seeds TEXT NOT NULL,      -- seeds: json list
    kind TEXT NOT NULL,                         -- single (the keep changed only it) | ablation (reverted, paired)
    measured_at REAL NOT NULL, PRIMARY KEY (bench, state, name));
"""

FINISHED = tuple(s.value for s in Status if s not in (Status.RUNNING, Status.INTERRUPTED))


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
            _upgrade(self._db)
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
                         diff: str, bench: BenchKey, commit_sha: str | None,
                         origin: str = "local") -> int:
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO experiments(state, parent, description, proposer, diff, tier, bench, status,"
                " commit_sha, origin, started_at) VALUES (?,?,?,?,?,?,?, 'running', ?,?,?)",
                (state, parent, description, proposer, diff, bench.tier, _key(bench), commit_sha, origin, time.time()))
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

    def state_runs(self, state: str) -> list[sqlite3.Row]:
        """Every run of one state, whichever experiment ran it (runs are reproducible: seed -> values)."""
        return self.query("SELECT runs.* FROM runs JOIN experiments ON runs.experiment_id = experiments.id"
                          " WHERE experiments.state = ? ORDER BY runs.id", (state,))

    # --- the swarm -----------------------------------------------------------------------------

    def offer_best(self, bench: BenchKey, state: str, val_bpb: float, test_bpb: float | None, author: str) -> bool:
        """Join a state this node measured or verified into the register of its benchmark key: a
        lower val_bpb wins, ties go to the smaller state hash. Returns True when the register
        changed. Order of arrival never matters. Never offer a peer's unverified claim."""
        with self.transaction() as tx:
            row = tx.execute("SELECT state, val_bpb FROM best WHERE bench = ?", (_key(bench),)).fetchone()
            if row and (row["val_bpb"], row["state"]) <= (val_bpb, state):
                return False
            tx.execute("INSERT OR REPLACE INTO best(bench, tier, state, val_bpb, test_bpb, author, updated_at)"
                       " VALUES (?,?,?,?,?,?,?)", (_key(bench), bench.tier, state, val_bpb, test_bpb, author, time.time()))
            return True

    def best(self, bench: BenchKey) -> sqlite3.Row | None:
        """The register's entry for one benchmark key, or None."""
        rows = self.query("SELECT * FROM best WHERE bench = ?", (_key(bench),))
        return rows[0] if rows else None

    def record_discovery(self, d, *, received_from: str, message_id: str) -> bool:
        """Store a Discovery (own or a peer's) and this copy's receipt; True if it was new."""
        now = time.time()
        with self.transaction() as tx:
            new = tx.execute(
                "INSERT OR IGNORE INTO discoveries(state, bench, tier, author, parent, diff, val_bpb, test_bpb,"
                " seeds, noise, description, created_ts, first_received_at, first_from)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (d.state, _key(d.bench), d.bench.tier, d.author, d.parent, d.diff, d.val_bpb, d.test_bpb,
                 json.dumps([[r.seed, r.val_bpb, r.test_bpb] for r in d.runs]), d.noise, d.description, d.ts, now, received_from)).rowcount == 1
            tx.execute("INSERT OR IGNORE INTO receipts(message_id, state, from_peer, received_at, tier)"
                       " VALUES (?,?,?,?,?)", (message_id, d.state, received_from, now, d.bench.tier))
            return new

    def discovery(self, tier: str, state: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM discoveries WHERE tier = ? AND state = ?", (tier, state))
        return rows[0] if rows else None

    def record_adoption(self, a, *, received_from: str) -> bool:
        with self.transaction() as tx:
            return tx.execute(
                "INSERT OR IGNORE INTO adoptions(peer, discovery_state, state, val_bpb, verified, ts, received_at,"
                " from_peer) VALUES (?,?,?,?,?,?,?,?)",
                (a.author, a.discovery_state, a.state, a.val_bpb, int(a.verified), a.ts, time.time(),
                 received_from)).rowcount == 1

    def record_foreign_state(self, *, state: str, bench: BenchKey, author: str, kind: str, status: str | None = None,
                             val_bpb: float | None = None) -> None:
        """A peer's Result (kind "result") or Claim ("claim") in our key; a claim heard again is heard anew."""
        verb = "REPLACE" if kind == "claim" else "IGNORE"
        with self.transaction() as tx:
            tx.execute(f"INSERT OR {verb} INTO foreign_states(state, bench, author, kind, status, val_bpb, ts)"
                       " VALUES (?,?,?,?,?,?,?)", (state, _key(bench), author, kind, status, val_bpb, time.time()))
            if kind == "claim":  # claims are free to make: keep the newest few, as the claim book does
                tx.execute("DELETE FROM foreign_states WHERE kind = 'claim' AND rowid NOT IN (SELECT rowid FROM"
                           " foreign_states WHERE kind = 'claim' ORDER BY ts DESC, rowid DESC LIMIT ?)", (MAX_CLAIM_ROWS,))

    def measured_by_peers(self, bench: BenchKey) -> set[str]:
        """States peers measured in our key (their results and discoveries): not measured again here."""
        rows = self.query("SELECT state FROM foreign_states WHERE bench = ? AND kind = 'result'"
                          " UNION SELECT state FROM discoveries WHERE bench = ?", (_key(bench), _key(bench)))
        return {r["state"] for r in rows}

    def claims(self, bench: BenchKey, since: float) -> list[sqlite3.Row]:
        """Peers' claims in our key heard since `since` (time.time()), oldest first: author, state, ts."""
        return self.query("SELECT author, state, ts FROM foreign_states WHERE bench = ? AND kind = 'claim'"
                          " AND ts >= ? ORDER BY ts", (_key(bench), since))

    def record_peer(self, p, *, now: float | None = None) -> bool:
        """Upsert a peer from its Presence; True when it was first seen now."""
        now = now or time.time()
        with self.transaction() as tx:
            new = tx.execute("INSERT OR IGNORE INTO peers(peer, first_seen, last_seen) VALUES (?,?,?)",
                             (p.author, now, now)).rowcount == 1
            tx.execute("UPDATE peers SET tier=?, role=?, hardware=?, head=?, head_val_bpb=?, addrs=?, version=?,"
                       " counters=?, last_seen=? WHERE peer=?",
                       (p.bench.tier, p.role, json.dumps(p.hardware), p.head, p.head_val_bpb, json.dumps(p.addrs),
                        p.version, json.dumps(p.counters), now, p.author))
            return new

    def peers(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM peers ORDER BY first_seen")

    def note_failed_verification(self, peer: str) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO peers(peer, first_seen, last_seen) VALUES (?,?,?)",
                       (peer, time.time(), time.time()))
            tx.execute("UPDATE peers SET failed_verifications = failed_verifications + 1 WHERE peer = ?", (peer,))

    def record_rejection(self, peer: str, reason: str) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT INTO rejections(peer, reason, at) VALUES (?,?,?)", (peer, reason, time.time()))

    def rejections_by_reason(self) -> dict[str, int]:
        return {r["reason"]: r["n"] for r in self.query(
            "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason ORDER BY n DESC")}

    def record_effect(self, *, bench: BenchKey, state: str, parent: str | None, name: str, value, effect: float,
                      se: float, seeds: list[int], kind: str) -> None:
        """Store (or replace) the measured paired effect of hyperparameter `name` in kept `state`."""
        if kind not in ("single", "ablation"):
            raise ValueError(f"effect kind must be 'single' or 'ablation', not {kind!r}")
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO effects(bench, state, parent, name, value, effect, se, seeds, kind,"
                       " measured_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (_key(bench), state, parent, name, json.dumps(value), effect, se, json.dumps(list(seeds)), kind,
                        time.time()))

    def effects(self, bench: BenchKey | None = None) -> list[sqlite3.Row]:
        """Measured effects (value and seeds as stored: json), oldest first; one benchmark key's or all."""
        if bench is None:
            return self.query("SELECT * FROM effects ORDER BY measured_at, rowid")
        return self.query("SELECT * FROM effects WHERE bench = ? ORDER BY measured_at, rowid", (_key(bench),))

    def counters(self) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) AS n FROM experiments GROUP BY status")
        return {r["status"]: r["n"] for r in rows}


def _key(bench: BenchKey) -> str:
    """How a benchmark key is stored: the only place it is serialised (rows compare it as text)."""
    return json.dumps(bench.model_dump(), sort_keys=True)


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a ledger written by an earlier version up to SCHEMA, keeping every row: discoveries
    were keyed by state alone (so the same train.py found in a second tier was taken for a repeat)."""
    keys = [r[1] for r in db.execute("PRAGMA table_info(discoveries)") if r[5]]
    if keys == ["state"]:
        db.executescript("BEGIN; ALTER TABLE discoveries RENAME TO discoveries_v1;" + SCHEMA +
                         "INSERT INTO discoveries SELECT * FROM discoveries_v1; DROP TABLE discoveries_v1; COMMIT;")
    keys = [r[1] for r in db.execute("PRAGMA table_info(best)") if r[5]]
    if keys == ["tier"]:  # keyed by tier, and holding peers' unverified claims: start it over
        db.executescript("DROP TABLE best;")
    if "source" in [r[1] for r in db.execute("PRAGMA table_info(experiments)")]:
        db.execute("ALTER TABLE experiments RENAME COLUMN source TO origin")  # `source` is train.py text elsewhere
    columns = [r[1] for r in db.execute("PRAGMA table_info(receipts)")]
    if columns and "tier" not in columns:
        db.executescript("BEGIN; ALTER TABLE receipts ADD COLUMN tier TEXT NOT NULL DEFAULT '';"
                         "UPDATE receipts SET tier = COALESCE((SELECT tier FROM discoveries d"
                         " WHERE d.state = receipts.state), ''); COMMIT;")
