"""The run store under concurrent writers: K processes x T threads emit events and insert executions into one
SQLite store (WAL) for N seconds while reader processes follow every run with `events_after`, as the app's pages
do.

Each writer thread owns one run (like a pipeline) and writes, in a loop: an event `bench` with a counter `i`;
every `--exec-every`th iteration also a script row, an execution row and the `script_executed` event that
announces it (what `Pipeline._record_execution` does). Figures:

- events/s and executions/s sustained by the store (all writers together), latency of one emit (p50/p99/max);
- errors: every exception a writer or reader got, "database is locked" counted apart;
- losses/duplicates: afterwards, per run, the counters `i` are exactly 0..n-1 (n = what the thread says it
  wrote), seqs strictly increase, every `script_executed` event has its execution row and vice versa;
- readers: whether any poll saw a run's events out of order or with a gap, and the lag from an event's
  timestamp to the poll that saw it (p50/max).

    .venv/bin/python bench/bench_store.py [--procs 4] [--threads 3] [--seconds 10] [--readers 2]

JSON goes to bench/results/store-<time>.json (`--json PATH` to choose). `bench/bench_soak.py` runs this too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlestar_core.store import Store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CODE = "# [block: model]\nprint('Final Validation Performance: 0.5')\n# [end block: model]\n"
LOCKED = "database is locked"


def fake_result(i: int) -> SimpleNamespace:
    """What `Store.add_execution` reads from an ExecResult."""
    return SimpleNamespace(exit_code=0, stdout=f"Final Validation Performance: {i}\n" * 20, stderr="",
                           score=float(i), wall_time=0.01, peak_memory_mb=10.0, timed_out=False,
                           memory_exceeded=False, killed_reason=None, claimed_score=float(i),
                           fold_scores=[0.5, 0.6, 0.7], score_note=None)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- writers ---------------------------------------------------------------------------------------


def _writer_thread(store: Store, run_id: str, deadline: float, exec_every: int, out: dict[str, Any]) -> None:
    i, execs, latencies, errors = 0, 0, [], []
    script_id: int | None = None
    while time.time() < deadline:
        t0 = time.perf_counter()
        try:
            store.emit(run_id, "bench", {"i": i, "pad": "x" * 200})
            latencies.append(time.perf_counter() - t0)
            i += 1
        except Exception as exc:  # counted, never fatal: the point is to see them
            errors.append(f"emit: {type(exc).__name__}: {exc}")
            continue
        if exec_every and i % exec_every == 0:
            try:
                if script_id is None:
                    script_id = store.add_script(run_id, "bench", CODE, label="bench")
                eid = store.add_execution(run_id, script_id, fake_result(i), purpose="bench")
                store.emit(run_id, "script_executed", {"execution_id": eid, "script_id": script_id})
                execs += 1
            except Exception as exc:
                errors.append(f"execution: {type(exc).__name__}: {exc}")
    out.update(run_id=run_id, events=i, executions=execs, latencies=latencies, errors=errors)


def writer_process(root: str, proc: int, threads: int, start_at: float, seconds: float, exec_every: int,
                   run_ids: list[str], queue: Any) -> None:
    try:
        store = Store(Path(root))
        while time.time() < start_at:
            time.sleep(0.005)
        outs: list[dict[str, Any]] = [{} for _ in range(threads)]
        workers = [threading.Thread(target=_writer_thread,
                                    args=(store, run_ids[t], start_at + seconds, exec_every, outs[t]))
                   for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        lat = [x for o in outs for x in o.pop("latencies")]
        queue.put({"proc": proc, "threads": outs, "latency_sample": lat[:: max(1, len(lat) // 5000)],
                   "latency_max": max(lat, default=0.0), "error": None})
    except Exception:
        queue.put({"proc": proc, "threads": [], "latency_sample": [], "latency_max": 0.0,
                   "error": traceback.format_exc()})


# -- readers ---------------------------------------------------------------------------------------


def reader_process(root: str, run_ids: list[str], stop: Any, interval: float, queue: Any) -> None:
    """Follow every run with events_after like a page does, until `stop` is set and one last poll is done;
    report disorder, gaps and lag."""
    store = Store(Path(root))
    last_seq = dict.fromkeys(run_ids, 0)
    next_i = dict.fromkeys(run_ids, 0)
    problems: list[str] = []
    errors: list[str] = []
    lags: list[float] = []
    polls = 0
    seen = 0
    while True:
        final = stop.is_set()
        for rid in run_ids:
            try:
                rows = store.events_after(rid, last_seq[rid])
            except Exception as exc:
                errors.append(f"events_after: {type(exc).__name__}: {exc}")
                continue
            now = time.time()
            for r in rows:
                if r["seq"] <= last_seq[rid]:
                    problems.append(f"{rid}: seq {r['seq']} after {last_seq[rid]}")
                last_seq[rid] = r["seq"]
                if r["kind"] == "bench":
                    if r["payload"]["i"] != next_i[rid] and len(problems) < 50:
                        problems.append(f"{rid}: i={r['payload']['i']} where {next_i[rid]} was next (gap/dup)")
                    next_i[rid] = r["payload"]["i"] + 1
                if not final:
                    lags.append(now - r["ts"])
            seen += len(rows)
        polls += 1
        if final:
            break
        time.sleep(interval)
    queue.put({"reader": True, "problems": problems, "errors": errors, "polls": polls, "events_seen": seen,
               "lag_sample": lags[:: max(1, len(lags) // 5000)], "lag_max": max(lags, default=0.0),
               "next_i": next_i})


# -- verification ----------------------------------------------------------------------------------


def verify_runs(store: Store, expected: dict[str, tuple[int, int]]) -> list[str]:
    """Every run's `bench` counters exactly 0..n-1, seqs strictly increasing, executions <-> events 1:1."""
    problems: list[str] = []
    for rid, (n_events, n_execs) in expected.items():
        events = store.events_after(rid, 0, limit=10_000_000)
        seqs = [e["seq"] for e in events]
        if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
            problems.append(f"{rid}: seqs not strictly increasing")
        counters = [e["payload"]["i"] for e in events if e["kind"] == "bench"]
        if counters != list(range(n_events)):
            problems.append(f"{rid}: {len(counters)} bench events stored, {n_events} written "
                            f"(missing {sorted(set(range(n_events)) - set(counters))[:5]}, "
                            f"duplicated {len(counters) - len(set(counters))})")
        announced = [e["payload"]["execution_id"] for e in events if e["kind"] == "script_executed"]
        rows = [r["id"] for r in store.table("executions", rid)]
        if sorted(announced) != sorted(rows) or len(rows) != n_execs:
            problems.append(f"{rid}: {len(rows)} execution rows, {len(announced)} script_executed events, "
                            f"{n_execs} written")
    return problems


# -- the benchmark ---------------------------------------------------------------------------------


def run_bench(root: Path, procs: int = 4, threads: int = 3, seconds: float = 10.0, readers: int = 2,
              exec_every: int = 5, reader_interval: float = 0.2) -> dict[str, Any]:
    """Run the micro-benchmark on the store folder `root`; returns the figures (see the module doc)."""
    store = Store(root)
    run_ids = [[store.create_run(f"bench p{p} t{t}", {}, {}, "bench") for t in range(threads)]
               for p in range(procs)]
    all_ids = [r for ids in run_ids for r in ids]
    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    start_at = time.time() + 3.0  # spawned interpreters need a moment to import
    children = [ctx.Process(target=writer_process,
                            args=(str(root), p, threads, start_at, seconds, exec_every, run_ids[p], queue))
                for p in range(procs)]
    children += [ctx.Process(target=reader_process,
                             args=(str(root), all_ids, stop, reader_interval, queue))
                 for _ in range(readers)]
    for c in children:
        c.start()
    reports = [queue.get(timeout=seconds + 120) for _ in range(procs)]  # readers report only after `stop`
    stop.set()
    reports += [queue.get(timeout=120) for _ in range(readers)]
    for c in children:
        c.join(timeout=30)
    writers = [r for r in reports if not r.get("reader")]
    reader_reports = [r for r in reports if r.get("reader")]
    threads_out = [t for w in writers for t in w["threads"]]
    errors = [t_err for t in threads_out for t_err in t["errors"]]
    errors += [w["error"] for w in writers if w["error"]]
    errors += [e for r in reader_reports for e in r["errors"]]
    expected = {t["run_id"]: (t["events"], t["executions"]) for t in threads_out}
    problems = verify_runs(store, expected)
    for r in reader_reports:
        problems += [f"reader: {p}" for p in r["problems"]]
        for rid, n in r["next_i"].items():
            if rid in expected and n != expected[rid][0]:
                problems.append(f"reader: {rid} followed to i={n}, {expected[rid][0]} written")
    lat = [x for w in writers for x in w["latency_sample"]]
    lags = [x for r in reader_reports for x in r["lag_sample"]]
    n_events = sum(t["events"] for t in threads_out)
    n_execs = sum(t["executions"] for t in threads_out)
    total_events = n_events + n_execs  # each execution is announced by its own event
    wal = root / "mlestar.db-wal"
    ms = 1000.0
    return {
        "processes": procs, "threads_per_process": threads, "seconds": seconds, "readers": readers,
        "events": total_events, "executions": n_execs,
        "events_per_s": round(total_events / seconds, 1), "executions_per_s": round(n_execs / seconds, 1),
        "write_transactions_per_s": round((n_events + 2 * n_execs) / seconds, 1),  # + the execution rows
        "emit_latency_ms": {"p50": round((statistics.median(lat) if lat else 0) * ms, 2),
                            "p99": round((percentile(lat, 0.99) or 0) * ms, 2),
                            "max": round(max((w["latency_max"] for w in writers), default=0) * ms, 1)},
        "reader_polls": sum(r["polls"] for r in reader_reports),
        "reader_lag_ms": {"p50": round((statistics.median(lags) if lags else 0) * ms, 1),
                          "max": round(max((r["lag_max"] for r in reader_reports), default=0) * ms, 1)},
        "errors": len(errors), "locked_errors": sum(LOCKED in e for e in errors), "error_samples": errors[:10],
        "problems": problems[:50], "lost_or_duplicated": bool(problems),
        "wal_mb_after": round(wal.stat().st_size / 1e6, 2) if wal.exists() else 0.0,
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"store micro-benchmark: {r['processes']} processes x {r['threads_per_process']} threads writing, "
          f"{r['readers']} readers, {r['seconds']:g} s")
    print(f"  events written      {r['events']}  ({r['events_per_s']}/s; executions {r['executions_per_s']}/s; "
          f"write transactions {r['write_transactions_per_s']}/s)")
    lat = r["emit_latency_ms"]
    print(f"  emit latency        p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    print(f"  readers             {r['reader_polls']} polls, lag p50 {r['reader_lag_ms']['p50']} ms, "
          f"max {r['reader_lag_ms']['max']} ms")
    print(f"  errors              {r['errors']} ({r['locked_errors']} 'database is locked')")
    for e in r["error_samples"][:3]:
        print(f"    {e.strip().splitlines()[-1][:200]}")
    print(f"  lost / duplicated   {'YES' if r['lost_or_duplicated'] else 'none'}")
    for p in r["problems"][:5]:
        print(f"    {p}")
    print(f"  WAL after           {r['wal_mb_after']} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=4, help="writer processes (default 4)")
    parser.add_argument("--threads", type=int, default=3, help="writer threads per process (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they write (default 10)")
    parser.add_argument("--readers", type=int, default=2, help="reader processes following the runs (default 2)")
    parser.add_argument("--exec-every", type=int, default=5, help="an execution every N events (0 = none)")
    parser.add_argument("--store", default=None, help="store folder (default: a fresh temporary one)")
    parser.add_argument("--json", default=None, help="where to write the figures (default bench/results/)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(args.store) if args.store else Path(tmp) / "store"
        result = run_bench(root, args.procs, args.threads, args.seconds, args.readers, args.exec_every)
    print_report(result)
    out = Path(args.json) if args.json else RESULTS / f"store-{time.strftime('%Y-%m-%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"  written to {out}")
    return 1 if result["lost_or_duplicated"] or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
