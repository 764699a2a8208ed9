"""The run store: one SQLite database (WAL) plus an artifacts folder per run.

Every row is committed before the event that announces it, so whatever the UI shows is
already on disk. WAL mode lets the app's pages read while a run's thread writes. Steps are
memoised by a key (`Store.step_result`): a resumed run replays completed steps from their
stored results and only redoes the step that was in flight.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from . import script as script_mod
from .hardening import scrub

# Named, ordered migrations, applied in a transaction and recorded in `migrations`.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, task_json TEXT NOT NULL,
            config_json TEXT NOT NULL, brain TEXT NOT NULL, status TEXT NOT NULL,
            control TEXT NOT NULL DEFAULT 'run', phase TEXT, best_score REAL,
            holdout_score REAL, baseline_score REAL, error TEXT, task_dir TEXT, out_dir TEXT,
            time_used REAL NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL,
            finished REAL
        );
        CREATE TABLE steps (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL,
            phase TEXT NOT NULL, status TEXT NOT NULL, result_json TEXT, error TEXT,
            started REAL NOT NULL, ended REAL, UNIQUE(run_id, key)
        );
        CREATE TABLE model_cards (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, rank INTEGER NOT NULL,
            name TEXT NOT NULL, why TEXT, example_code TEXT, source TEXT, family TEXT
        );
        CREATE TABLE scripts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step_key TEXT,
            parent_id INTEGER, role TEXT NOT NULL, label TEXT, code TEXT NOT NULL,
            blocks_json TEXT, created REAL NOT NULL
        );
        CREATE TABLE executions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, script_id INTEGER NOT NULL,
            purpose TEXT, exit_code INTEGER, stdout TEXT, stderr TEXT, score REAL,
            wall_time REAL, peak_memory_mb REAL, timed_out INTEGER, memory_exceeded INTEGER,
            killed_reason TEXT, workdir TEXT, created REAL NOT NULL
        );
        CREATE TABLE ablations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, track INTEGER NOT NULL,
            outer_step INTEGER NOT NULL, block TEXT NOT NULL, description TEXT,
            script_id INTEGER, score REAL, baseline REAL, delta REAL
        );
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, track INTEGER NOT NULL,
            outer_step INTEGER NOT NULL, inner_step INTEGER NOT NULL, block TEXT NOT NULL,
            plan TEXT, decision TEXT NOT NULL, status TEXT NOT NULL, script_id INTEGER,
            parent_script_id INTEGER, score REAL, baseline REAL, kept INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL
        );
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL,
            block TEXT, plan TEXT, block_code TEXT, status TEXT NOT NULL,
            edited_plan TEXT, edited_code TEXT, created REAL NOT NULL, decided REAL
        );
        CREATE TABLE ensemble_rounds (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, round INTEGER NOT NULL,
            plan TEXT, script_id INTEGER, score REAL
        );
        CREATE TABLE brain_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, role TEXT NOT NULL,
            prompt TEXT, answer TEXT, tokens_in INTEGER, tokens_out INTEGER, cost REAL,
            latency REAL, error TEXT, created REAL NOT NULL
        );
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
            kind TEXT NOT NULL, payload_json TEXT NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, seq);
        CREATE INDEX scripts_run ON scripts(run_id);
        CREATE INDEX executions_run ON executions(run_id);
        CREATE INDEX attempts_run ON attempts(run_id);
        CREATE INDEX brain_calls_run ON brain_calls(run_id);
        """,
    ),
    (
        "002_ablation_spread",
        """
        ALTER TABLE ablations ADD COLUMN scores_json TEXT;
        ALTER TABLE ablations ADD COLUMN score_std REAL;
        ALTER TABLE ablations ADD COLUMN baseline_std REAL;
        ALTER TABLE ablations ADD COLUMN delta_std REAL
        """,
    ),
    (
        "003_llm_brains",
        """
        ALTER TABLE brain_calls ADD COLUMN model TEXT;
        ALTER TABLE brain_calls ADD COLUMN step_key TEXT;
        ALTER TABLE brain_calls ADD COLUMN call_index INTEGER;
        ALTER TABLE brain_calls ADD COLUMN sources_json TEXT;
        ALTER TABLE model_cards ADD COLUMN sources_json TEXT;
        ALTER TABLE runs ADD COLUMN pause_reason TEXT
        """,
    ),
    (
        "004_engine_scores",
        """
        ALTER TABLE executions ADD COLUMN claimed_score REAL;
        ALTER TABLE executions ADD COLUMN fold_scores_json TEXT;
        ALTER TABLE executions ADD COLUMN score_note TEXT;
        ALTER TABLE ensemble_rounds ADD COLUMN strategy TEXT;
        ALTER TABLE ensemble_rounds ADD COLUMN members_json TEXT;
        ALTER TABLE ensemble_rounds ADD COLUMN weights_json TEXT;
        ALTER TABLE ensemble_rounds ADD COLUMN fold_scores_json TEXT;
        ALTER TABLE runs ADD COLUMN protocol_json TEXT
        """,
    ),
    (
        "005_one_owner_and_exact_resume",
        """
        ALTER TABLE runs ADD COLUMN owner TEXT;
        ALTER TABLE runs ADD COLUMN lease_holder TEXT;
        ALTER TABLE runs ADD COLUMN lease_heartbeat REAL;
        ALTER TABLE events ADD COLUMN dkey TEXT;
        CREATE UNIQUE INDEX events_dkey ON events(run_id, dkey) WHERE dkey IS NOT NULL;
        CREATE INDEX executions_script ON executions(script_id, purpose);
        CREATE INDEX scripts_step ON scripts(run_id, step_key);
        CREATE INDEX brain_calls_step ON brain_calls(run_id, step_key)
        """,
    ),
    (
        "006_honest_brain_calls",
        """
        ALTER TABLE brain_calls ADD COLUMN outcome TEXT;
        ALTER TABLE brain_calls ADD COLUMN grounding_json TEXT;
        ALTER TABLE brain_calls ADD COLUMN thoughts_tokens INTEGER;
        ALTER TABLE brain_calls ADD COLUMN tool_tokens INTEGER;
        ALTER TABLE brain_calls ADD COLUMN search_queries INTEGER
        """,
    ),
    (
        "007_budget_clock_and_edits",
        """
        ALTER TABLE runs ADD COLUMN time_waiting REAL NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN clock_at REAL;
        ALTER TABLE runs ADD COLUMN clock_stopped_since REAL;
        ALTER TABLE runs ADD COLUMN clock_hold TEXT;
        ALTER TABLE decisions ADD COLUMN deadline REAL;
        ALTER TABLE decisions ADD COLUMN decided_by TEXT;
        ALTER TABLE attempts ADD COLUMN edit_script_id INTEGER;
        ALTER TABLE attempts ADD COLUMN error TEXT
        """,
    ),
]

RUN_TABLES = ("steps", "model_cards", "scripts", "executions", "ablations", "attempts",
              "decisions", "ensemble_rounds", "brain_calls", "events")


def _to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _with_payloads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event rows with their JSON payload decoded (as `payload`)."""
    for r in rows:
        r["payload"] = json.loads(r.pop("payload_json"))
    return rows


def _ensure_wal(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL once. The switch needs an exclusive lock that the busy timeout does not
    wait for, so two processes opening a brand-new store together (the app and a CLI run) would get
    "database is locked": retry it briefly instead."""
    for attempt in range(100):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.01 * (attempt + 1))
    # A burst of writes grows the WAL file, which keeps its peak size while connections are open.
    conn.execute("PRAGMA journal_size_limit=67108864")


def _scrubbed(text: str | None) -> str | None:
    return scrub(text) if text else text


def dumps(value: Any) -> str:
    return json.dumps(_to_jsonable(value), ensure_ascii=False)


class Store:
    """Thread-safe access to the run database; one connection per thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "mlestar.db"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._migrate()

    # -- connection and transactions -------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _ensure_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock keeps this process's threads from interleaving."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.atomic() as c:
            c.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
            done = {r["name"] for r in c.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    for statement in sql.split(";"):
                        if statement.strip():
                            c.execute(statement)
                    c.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.atomic() as c:
            cur = c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))
            return int(cur.lastrowid or 0)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute(sql, params).fetchall()]

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        row = self._conn().execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    # -- runs ------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def create_run(self, name: str, task: Any, config: Any, brain: str, task_dir: str = "",
                   out_dir: str = "", owner: str | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        now = time.time()
        self._insert("runs", {
            "id": run_id, "name": name, "task_json": dumps(task), "config_json": dumps(config),
            "brain": brain, "status": "created", "created": now, "updated": now,
            "task_dir": task_dir, "out_dir": out_dir, "owner": owner,
        })
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM runs WHERE id = ?", (run_id,))

    def list_runs(self, owner: str | None = None) -> list[dict[str, Any]]:
        """All runs, newest first; with `owner`, only that user's runs."""
        if owner is not None:
            return self._rows("SELECT * FROM runs WHERE owner = ? ORDER BY created DESC", (owner,))
        return self._rows("SELECT * FROM runs ORDER BY created DESC")

    def update_run(self, run_id: str, **fields: Any) -> None:
        for name in ("error", "pause_reason"):  # tracebacks and service errors may quote a secret
            if isinstance(fields.get(name), str):
                fields[name] = scrub(fields[name])
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.atomic() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def pause_with_reason(self, run_id: str, reason: str, **fields: Any) -> None:
        """The brain cannot go on: the run waits, paused, until the user resumes it (see RunManager)."""
        self.update_run(run_id, status="paused", control="pause", pause_reason=reason, **fields)

    def set_control(self, run_id: str, control: str) -> None:
        """'run', 'pause' or 'stop': written by the UI/CLI, read by the run's thread."""
        if control not in ("run", "pause", "stop"):
            raise ValueError(f"unknown control {control!r}")
        self.update_run(run_id, control=control)
        self.emit(run_id, "control", {"control": control})

    def set_constraints(self, run_id: str, constraints: list[str]) -> None:
        """Pin planner constraints on a run; a live run reads them before its next step."""
        cleaned = [c.strip() for c in constraints if c and c.strip()]
        with self.atomic() as c:
            row = c.execute("SELECT config_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise ValueError(f"no run {run_id!r}")
            config = json.loads(row["config_json"])
            config["constraints"] = cleaned
            c.execute("UPDATE runs SET config_json = ?, updated = ? WHERE id = ?",
                      (json.dumps(config), time.time(), run_id))
        self.emit(run_id, "constraints", {"constraints": cleaned})

    def delete_run(self, run_id: str) -> None:
        with self.atomic() as c:
            for table in RUN_TABLES:
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # -- steps (memoised, for resume) ------------------------------------------------
    def step_result(self, run_id: str, key: str) -> tuple[bool, Any]:
        row = self._one("SELECT status, result_json FROM steps WHERE run_id = ? AND key = ?",
                        (run_id, key))
        if row is None or row["status"] != "done":
            return False, None
        return True, json.loads(row["result_json"]) if row["result_json"] else None

    def start_step(self, run_id: str, key: str, phase: str) -> None:
        with self.atomic() as c:
            c.execute(
                "INSERT INTO steps (run_id, key, phase, status, started) VALUES (?, ?, ?, 'running', ?)"
                " ON CONFLICT(run_id, key) DO UPDATE SET status='running', started=excluded.started,"
                " ended=NULL, error=NULL",
                (run_id, key, phase, time.time()),
            )

    def finish_step(self, run_id: str, key: str, result: Any, status: str = "done",
                    error: str | None = None) -> None:
        with self.atomic() as c:
            c.execute("UPDATE steps SET status = ?, result_json = ?, error = ?, ended = ?"
                      " WHERE run_id = ? AND key = ?",
                      (status, dumps(result), error, time.time(), run_id, key))

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM steps WHERE run_id = ? ORDER BY id", (run_id,))

    # -- records -----------------------------------------------------------------------
    def _add_nth(self, table: str, row: dict[str, Any], match: tuple[str, ...], nth: int | None) -> int:
        """Insert `row`, or with `nth`, write it as the nth row sharing its `match` columns (see put_nth)."""
        if nth is None:
            return self._insert(table, row)
        run_id = row.pop("run_id")
        return self.put_nth(table, run_id, {k: row.pop(k) for k in match}, nth, row)

    def add_model_card(self, run_id: str, rank: int, card: Any, nth: int | None = None) -> int:
        d = _to_jsonable(card)
        return self._add_nth("model_cards", {"run_id": run_id, "rank": rank, "name": d["name"],
                                            "why": d.get("why"), "example_code": d.get("example_code"),
                                            "source": d.get("source"), "family": d.get("family"),
                                            "sources_json": json.dumps(d.get("sources") or [])},
                             ("rank",), nth)

    def add_script(self, run_id: str, role: str, code: str, *, label: str = "",
                   parent_id: int | None = None, step_key: str | None = None) -> int:
        try:
            names = script_mod.block_names(code)
        except script_mod.ScriptError:
            names = []
        return self._insert("scripts", {
            "run_id": run_id, "step_key": step_key, "parent_id": parent_id, "role": role,
            "label": label, "code": code, "blocks_json": json.dumps(names), "created": time.time(),
        })

    def get_script(self, script_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM scripts WHERE id = ?", (script_id,))

    def add_execution(self, run_id: str, script_id: int, result: Any, purpose: str = "",
                      workdir: str = "") -> int:
        r = result
        return self._insert("executions", {
            "run_id": run_id, "script_id": script_id, "purpose": purpose, "exit_code": r.exit_code,
            "stdout": scrub(r.stdout), "stderr": scrub(r.stderr), "score": r.score, "wall_time": r.wall_time,
            "peak_memory_mb": r.peak_memory_mb, "timed_out": int(r.timed_out),
            "memory_exceeded": int(r.memory_exceeded), "killed_reason": r.killed_reason,
            "workdir": workdir, "created": time.time(),
            "claimed_score": getattr(r, "claimed_score", None),
            "fold_scores_json": json.dumps(getattr(r, "fold_scores", None) or []),
            "score_note": getattr(r, "score_note", None),
        })

    def add_ablation(self, run_id: str, track: int, outer: int, result: Any, script_id: int | None,
                     *, scores: list[float | None] | None = None, score_std: float | None = None,
                     baseline_std: float | None = None, delta_std: float | None = None,
                     nth: int | None = None) -> int:
        d = _to_jsonable(result)
        return self._add_nth("ablations", {
            "run_id": run_id, "track": track, "outer_step": outer, "block": d["block"],
            "description": d.get("description"), "script_id": script_id, "score": d.get("score"),
            "baseline": d.get("baseline"), "delta": d.get("delta"),
            "scores_json": json.dumps(scores) if scores is not None else None, "score_std": score_std,
            "baseline_std": baseline_std, "delta_std": delta_std,
        }, ("track", "outer_step"), nth)

    def update_ablation(self, ablation_id: int, result: Any, *, scores: list[float | None],
                        score_std: float | None, baseline_std: float | None, delta_std: float | None) -> None:
        """Refresh an ablation row as more validation splits come in (delta is their mean)."""
        d = _to_jsonable(result)
        with self.atomic() as c:
            c.execute("UPDATE ablations SET delta = ?, scores_json = ?, score_std = ?, baseline_std = ?, "
                      "delta_std = ? WHERE id = ?", (d.get("delta"), json.dumps(scores), score_std, baseline_std,
                                                     delta_std, ablation_id))

    def add_attempt(self, run_id: str, nth: int | None = None, **row: Any) -> int:
        row.setdefault("created", time.time())
        return self._add_nth("attempts", {"run_id": run_id, **row}, ("track", "outer_step", "inner_step"), nth)

    def mark_kept_attempt(self, run_id: str, track: int, outer: int, attempt_id: int | None) -> None:
        with self.atomic() as c:
            c.execute("UPDATE attempts SET kept = 0 WHERE run_id = ? AND track = ? AND outer_step = ?",
                      (run_id, track, outer))
            if attempt_id is not None:
                c.execute("UPDATE attempts SET kept = 1 WHERE id = ?", (attempt_id,))

    def add_ensemble_round(self, run_id: str, rnd: int, plan: str, script_id: int | None,
                           score: float | None, *, strategy: str | None = None,
                           members: list[int] | None = None, weights: list[float] | None = None,
                           fold_scores: list[float | None] | None = None, nth: int | None = None) -> int:
        return self._add_nth("ensemble_rounds", {
            "run_id": run_id, "round": rnd, "plan": plan, "script_id": script_id, "score": score,
            "strategy": strategy, "members_json": json.dumps(members or []),
            "weights_json": json.dumps(weights) if weights is not None else None,
            "fold_scores_json": json.dumps(fold_scores or [])}, ("round",), nth)

    def set_ensemble_script(self, round_id: int, script_id: int) -> None:
        with self.atomic() as c:
            c.execute("UPDATE ensemble_rounds SET script_id = ? WHERE id = ?", (script_id, round_id))

    def add_brain_call(self, run_id: str, call: Any) -> int:
        d = _to_jsonable(call)
        return self._insert("brain_calls", {
            "run_id": run_id, "role": d["role"], "prompt": _scrubbed(d.get("prompt")),
            "answer": _scrubbed(d.get("answer")),
            "tokens_in": d.get("tokens_in", 0), "tokens_out": d.get("tokens_out", 0),
            "cost": d.get("cost", 0.0), "latency": d.get("latency", 0.0), "error": _scrubbed(d.get("error")),
            "model": d.get("model") or "", "step_key": d.get("step_key") or "",
            "call_index": d.get("call_index") or 0, "sources_json": json.dumps(d.get("sources") or []),
            "outcome": d.get("outcome") or ("failed" if d.get("error") else "ok"),
            "grounding_json": json.dumps(d["grounding"]) if d.get("grounding") else None,
            "thoughts_tokens": d.get("thoughts_tokens") or 0, "tool_tokens": d.get("tool_tokens") or 0,
            "search_queries": d.get("search_queries") or 0,
            "created": time.time(),
        })

    def brain_spent(self, run_id: str) -> float:
        """USD the run's brain calls cost so far (estimated)."""
        row = self._one("SELECT COALESCE(SUM(cost), 0) AS c FROM brain_calls WHERE run_id = ?", (run_id,))
        return float(row["c"]) if row else 0.0

    def brain_usage(self, run_id: str) -> list[dict[str, Any]]:
        """Per role: calls, failed calls, tokens in and out, cost and total latency."""
        return self._rows(
            "SELECT role, COUNT(*) AS calls, SUM(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END) AS failed, "
            "SUM(CASE WHEN outcome = 'fallback' THEN 1 ELSE 0 END) AS fallbacks, "
            "COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_out), 0) AS tokens_out, "
            "COALESCE(SUM(cost), 0) AS cost, COALESCE(SUM(latency), 0) AS latency "
            "FROM brain_calls WHERE run_id = ? GROUP BY role ORDER BY MIN(id)", (run_id,))

    def brain_call_list(self, run_id: str, *, roles: Sequence[str] | None = None, failed_only: bool = False,
                        limit: int | None = None) -> list[dict[str, Any]]:
        """The run's brain calls, newest first, without their prompt and answer texts (a long run has
        hundreds of them): every column but those, plus `n` (the call's number in the run, from 1),
        `prompt_chars` and `answer_chars` (None when there was no answer). Filters: `roles`
        (None or empty = all), `failed_only` (calls with an error); `limit` keeps the newest ones."""
        where, params = "", [run_id]
        if roles:
            where += f" AND role IN ({', '.join('?' * len(roles))})"
            params.extend(roles)
        if failed_only:
            where += " AND error IS NOT NULL"
        sql = ("SELECT * FROM (SELECT id, run_id, role, tokens_in, tokens_out, cost, latency, error, model, "
               "step_key, call_index, sources_json, created, LENGTH(prompt) AS prompt_chars, "
               "LENGTH(answer) AS answer_chars, ROW_NUMBER() OVER (ORDER BY id) AS n "
               "FROM brain_calls WHERE run_id = ?) WHERE 1 = 1" + where + " ORDER BY id DESC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self._rows(sql, tuple(params))

    def get_brain_call(self, call_id: int) -> dict[str, Any] | None:
        """One brain call with its prompt and answer."""
        return self._one("SELECT * FROM brain_calls WHERE id = ?", (call_id,))

    def put_nth(self, table: str, run_id: str, match: dict[str, Any], n: int, row: dict[str, Any]) -> int:
        """Write `row` as the n-th (from 0) row of `table` matching `match`: update that row when a redone step
        already wrote it, insert otherwise. Redoing a step in the same order so rewrites its rows in place,
        and the ids that its events name stay valid."""
        if table not in ("model_cards", "ablations", "attempts", "ensemble_rounds"):
            raise ValueError(f"{table!r} is not a per-step table")
        cond = " AND ".join(f"{k} IS ?" for k in match)
        with self.atomic() as c:
            ids = [r[0] for r in c.execute(f"SELECT id FROM {table} WHERE run_id = ? AND {cond} ORDER BY id",
                                           (run_id, *match.values()))]
            full = {"run_id": run_id, **match, **row}
            if n < len(ids):
                sets = ", ".join(f"{k} = ?" for k in full)
                c.execute(f"UPDATE {table} SET {sets} WHERE id = ?", (*full.values(), ids[n]))
                return int(ids[n])
            cols, marks = ", ".join(full), ", ".join("?" for _ in full)
            cur = c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(full.values()))
            return int(cur.lastrowid or 0)

    def nth_script(self, run_id: str, step_key: str, role: str, label: str, code: str, n: int) -> int | None:
        """The id of the n-th stored script of this step with exactly this role, label and code, if any."""
        rows = self._rows("SELECT id FROM scripts WHERE run_id = ? AND step_key = ? AND role = ? AND label = ?"
                          " AND code = ? ORDER BY id", (run_id, step_key, role, label, code))
        return int(rows[n]["id"]) if n < len(rows) else None

    def finished_execution(self, script_id: int, purpose: str) -> dict[str, Any] | None:
        """The stored execution of this script for this purpose (executions are stored once complete)."""
        return self._one("SELECT * FROM executions WHERE script_id = ? AND purpose = ? ORDER BY id DESC LIMIT 1",
                         (script_id, purpose))

    def nth_brain_call(self, run_id: str, step_key: str, role: str, prompt: str, n: int) -> int | None:
        rows = self._rows("SELECT id FROM brain_calls WHERE run_id = ? AND step_key = ? AND role = ? AND prompt = ?"
                          " ORDER BY id", (run_id, step_key, role, prompt))
        return int(rows[n]["id"]) if n < len(rows) else None

    def answered_call(self, run_id: str, step_key: str, role: str, index: int, prompt: str) -> dict[str, Any] | None:
        """A model's stored answer to this call of this step (asked again when a step is redone)."""
        return self._one("SELECT * FROM brain_calls WHERE run_id = ? AND step_key = ? AND role = ? AND call_index = ?"
                         " AND prompt = ? AND answer IS NOT NULL AND COALESCE(outcome, '') != 'fallback'"
                         " AND model != 'fallback' ORDER BY id LIMIT 1",
                         (run_id, step_key, role, index, prompt))

    # -- one owner per run -------------------------------------------------------------
    def swap_lease(self, run_id: str, expected: str | None, holder: str | None) -> bool:
        """Compare-and-set the run's lease: only succeeds while the lease is still held by `expected`."""
        with self.atomic() as c:
            cur = c.execute("UPDATE runs SET lease_holder = ?, lease_heartbeat = ? WHERE id = ? AND lease_holder IS ?",
                            (holder, time.time() if holder else None, run_id, expected))
            return cur.rowcount == 1

    def heartbeat(self, run_id: str, holder: str) -> bool:
        """Renew the lease; False when another process took it (this one must stop driving the run)."""
        with self.atomic() as c:
            cur = c.execute("UPDATE runs SET lease_heartbeat = ? WHERE id = ? AND lease_holder = ?",
                            (time.time(), run_id, holder))
            return cur.rowcount == 1

    def table(self, name: str, run_id: str, order: str = "id") -> list[dict[str, Any]]:
        if name not in RUN_TABLES:
            raise ValueError(f"unknown table {name!r}")
        return self._rows(f"SELECT * FROM {name} WHERE run_id = ? ORDER BY {order}", (run_id,))

    def executions_of(self, script_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM executions WHERE script_id = ? ORDER BY id", (script_id,))

    # -- human decisions -----------------------------------------------------------------
    def request_decision(self, run_id: str, key: str, block: str, plan: str, block_code: str,
                         auto_approve_after: float | None = None) -> int:
        """A pending decision on a plan; with `auto_approve_after` (seconds) its `deadline` is that long after its
        creation, stored with it, so a restarted run honours the same deadline."""
        # The latest decision of this key, decided or not: a run resumed after the human answered goes on with
        # that answer instead of asking again.
        existing = self._one("SELECT id FROM decisions WHERE run_id = ? AND key = ? ORDER BY id DESC LIMIT 1",
                             (run_id, key))
        if existing:
            return int(existing["id"])
        created = time.time()
        deadline = created + float(auto_approve_after) if auto_approve_after is not None else None
        did = self._insert("decisions", {"run_id": run_id, "key": key, "block": block, "plan": plan,
                                         "block_code": block_code, "status": "pending",
                                         "created": created, "deadline": deadline})
        self.emit(run_id, "approval_needed", {"decision_id": did, "key": key, "block": block, "plan": plan,
                                              "deadline": deadline})
        return did

    # "auto-approved": the pipeline approved the plan itself, nobody answered by the decision's deadline.
    DECISION_STATUSES = ("approved", "edited", "rejected", "auto-approved")

    def decide(self, decision_id: int, status: str, edited_plan: str | None = None,
               edited_code: str | None = None, decided_by: str | None = None) -> bool:
        """Answer a pending decision (only the first answer counts: a human's and the automatic approval
        race safely). `decided_by`: who, e.g. a signed-in user's name; "human" when not given, and for
        "auto-approved" the rule that decided. Returns whether this answer was the one taken."""
        if status not in self.DECISION_STATUSES:
            raise ValueError(f"unknown decision {status!r}")
        who = decided_by or ("auto" if status == "auto-approved" else "human")
        with self.atomic() as c:
            cur = c.execute("UPDATE decisions SET status = ?, edited_plan = ?, edited_code = ?, decided = ?,"
                            " decided_by = ? WHERE id = ? AND status = 'pending'",
                            (status, edited_plan, edited_code, time.time(), who, decision_id))
            taken = cur.rowcount == 1
        row = self._one("SELECT run_id FROM decisions WHERE id = ?", (decision_id,))
        if row and taken:
            self.emit(row["run_id"], "decision", {"decision_id": decision_id, "status": status, "decided_by": who})
        return taken

    def get_decision(self, decision_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM decisions WHERE id = ?", (decision_id,))

    def pending_decisions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        if run_id is None:
            return self._rows("SELECT * FROM decisions WHERE status = 'pending' ORDER BY id")
        return self._rows("SELECT * FROM decisions WHERE run_id = ? AND status = 'pending' ORDER BY id",
                          (run_id,))

    # -- events ------------------------------------------------------------------------
    def emit(self, run_id: str, kind: str, payload: dict[str, Any] | None = None, key: str | None = None) -> int:
        """Append an event; returns its seq. An event with a `key` is written once per run: emitting the
        same key again (a step redone after a crash) writes nothing and returns 0."""
        with self.atomic() as c:
            cur = c.execute("INSERT OR IGNORE INTO events (run_id, ts, kind, payload_json, dkey)"
                            " VALUES (?, ?, ?, ?, ?)", (run_id, time.time(), kind, scrub(dumps(payload or {})), key))
            return int(cur.lastrowid or 0) if cur.rowcount else 0

    def events_of_kind(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        return _with_payloads(self._rows("SELECT * FROM events WHERE run_id = ? AND kind = ? ORDER BY seq",
                                         (run_id, kind)))

    def events_after(self, run_id: str, seq: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        return _with_payloads(self._rows("SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                                         (run_id, seq, limit)))
