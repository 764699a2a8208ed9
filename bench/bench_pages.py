"""Run pages at scale: render time of each run page for a run of ~500 script executions, and how far
the live dashboard lags behind the store.

The big run is SYNTHETIC: one real run of the pipeline (breast-cancer, small knobs) is made, then its
rows (scripts, executions, ablations, attempts, steps, events, ensemble rounds) are replicated with the
store API into a new run, each copy as further outer refinement steps, until it has >= 500 executions.
Running the real pipeline to 500 executions would take ~15 minutes on two cores and exercise the same
page code.

Figures:
- render: each page in AppTest (`streamlit.testing`), a finished run, mean of N runs after a warm-up
  (includes app.py: router, sidebar, approval banner; AppTest's own overhead included, so an upper bound);
- live lag, estimated: a poll every 2 s sees an event written at a uniformly random moment after
  U(0, 2) s, plus the time the dashboard's fragment takes to read the store and shape it (measured);
- live lag, measured (if /usr/bin/chromium exists): `streamlit run` + headless chromium on the
  dashboard of the big run marked running; a `log` event is written to the store and the time until
  its text is in the page is taken, several times at random moments.

    .venv/bin/python bench/bench_pages.py [--repeats 5] [--source STORE RUN_ID] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mlestar_core import budget_clock, views  # noqa: E402
from mlestar_core.config import RunConfig  # noqa: E402
from mlestar_core.pipeline import Pipeline, create_run  # noqa: E402
from mlestar_core.store import Store  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402

PAGES = ["app_pages/run.py", "app_pages/models.py", "app_pages/ablation.py", "app_pages/attempts.py",
         "app_pages/ensemble.py", "app_pages/replay.py"]
TARGET_EXECUTIONS = 500
POLL_SECONDS = 2.0
_OUTER_KEY = re.compile(r"^(t\d+/o)(\d+)(/.*)$")


def real_run(store: Store, out: Path) -> str:
    task = load_task(ROOT / "demo_tasks" / "breast-cancer")
    config = RunConfig(num_models=2, outer_steps=1, inner_steps=2, num_solutions=2, ensemble_rounds=1, workers=2)
    run_id = create_run(store, task, config, out_dir=out)
    Pipeline(store, run_id).run()
    return run_id


def replicate(src: Store, src_id: str, dst: Store, target: int = TARGET_EXECUTIONS) -> tuple[str, int]:
    """A new run in dst made of copies of src_id's rows. Copy 0 is the whole run; each further copy adds
    the refinement rows again (scripts, executions, ablations, attempts, steps, events) as T more outer
    steps starting from copy 0's solutions, until the new run has `target` executions."""
    run = src.get_run(src_id)
    assert run is not None
    config = json.loads(run["config_json"])
    T = int(config["outer_steps"])
    new_id = dst.create_run(f"{run['name']} (synthetic)", json.loads(run["task_json"]), config,
                            run["brain"], task_dir=run["task_dir"] or "", out_dir=run["out_dir"] or "")
    scripts, execs = src.table("scripts", src_id), src.table("executions", src_id)
    events = src.events_after(src_id)
    span = (events[-1]["ts"] - events[0]["ts"]) if events else 1.0
    for card in src.table("model_cards", src_id):
        dst.add_model_card(new_id, card["rank"], card)
    first: dict[int, int] = {}
    k = 0
    while k == 0 or len(dst.table("executions", new_id)) < target:
        sid: dict[int, int] = {}
        later = k > 0  # later copies start from copy 0's solutions, as further outer steps would

        def mapped(old: int | None, sid: dict[int, int] = sid, first: dict[int, int] = first) -> int | None:
            return None if old is None else sid.get(old, first.get(old))

        for s in scripts:
            if later and s["role"] in ("baseline", "initial", "merge", "debug", "data_usage", "leakage"):
                continue
            sid[s["id"]] = dst.add_script(new_id, s["role"], s["code"], label=s["label"] or "",
                                          parent_id=mapped(s["parent_id"]))
        if not later:
            first = dict(sid)
        for e in execs:
            if e["script_id"] in sid and not (later and e["purpose"] != "search"):
                dst.add_execution(new_id, sid[e["script_id"]], SimpleNamespace(**{
                    f: e[f] for f in ("exit_code", "stdout", "stderr", "score", "wall_time", "peak_memory_mb",
                                      "timed_out", "memory_exceeded", "killed_reason")}), purpose=e["purpose"])
        shift = k * T
        for a in src.table("ablations", src_id):
            dst.add_ablation(new_id, a["track"], a["outer_step"] + shift, a, mapped(a["script_id"]),
                             scores=json.loads(a["scores_json"]) if a.get("scores_json") else None,
                             score_std=a.get("score_std"), baseline_std=a.get("baseline_std"),
                             delta_std=a.get("delta_std"))
        for a in src.table("attempts", src_id):
            row = {c: a[c] for c in ("track", "inner_step", "block", "plan", "decision", "status", "score",
                                     "baseline", "kept")}
            dst.add_attempt(new_id, outer_step=a["outer_step"] + shift, script_id=mapped(a["script_id"]),
                            parent_script_id=mapped(a["parent_script_id"]), **row)
        for st in src.steps(src_id):
            m = _OUTER_KEY.match(st["key"])
            if later and not m:
                continue
            key = f"{m[1]}{int(m[2]) + shift}{m[3]}" if m else st["key"]
            dst.start_step(new_id, key, st["phase"])
            dst.finish_step(new_id, key, json.loads(st["result_json"]) if st["result_json"] else None, st["status"])
        with dst.atomic() as c:  # events keep their kinds and payloads; times are spread over the copies
            for e in events:
                p = dict(e["payload"])
                if later and e["kind"] in ("run_started", "run_finished", "final", "model_card", "candidate_scored"):
                    continue
                if "outer" in p:
                    p["outer"] = int(p["outer"]) + shift
                if isinstance(p.get("key"), str) and (m := _OUTER_KEY.match(p["key"])):
                    p["key"] = f"{m[1]}{int(m[2]) + shift}{m[3]}"
                c.execute("INSERT INTO events (run_id, ts, kind, payload_json) VALUES (?, ?, ?, ?)",
                          (new_id, e["ts"] + k * span, e["kind"], json.dumps(p)))
        k += 1
    for r in src.table("ensemble_rounds", src_id):
        dst.add_ensemble_round(new_id, r["round"], r["plan"], first.get(r["script_id"]), r["score"])
    config["outer_steps"] = T * k
    with dst.atomic() as c:
        c.execute("UPDATE runs SET config_json = ? WHERE id = ?", (json.dumps(config), new_id))
    dst.update_run(new_id, status="finished", best_score=run["best_score"], holdout_score=run["holdout_score"],
                   baseline_score=run["baseline_score"], time_used=(run["time_used"] or 0) * k,
                   phase="done", finished=time.time())
    return new_id, k


def render_times(root: Path, run_id: str, repeats: int) -> dict[str, list[float]]:
    from streamlit.testing.v1 import AppTest

    os.environ["MLESTAR_HOME"] = str(root)
    sys.argv = ["streamlit"]
    out: dict[str, list[float]] = {}
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["run"] = run_id
        at.run()
        at.switch_page(page).run()  # warm-up: imports, caches
        assert not at.exception, (page, at.exception)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            assert not at.exception, (page, at.exception)
        out[page] = times
    return out


def fragment_latency(store: Store, run_id: str, repeats: int) -> list[float]:
    """What the dashboard's live fragment does per poll besides drawing: read and shape the store."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = store.get_run(run_id)
        events = store.events_after(run_id)
        store.pending_decisions(run_id)
        timeline = views.phase_timeline(views.steps_from_rows(store.steps(run_id)),
                                        json.loads(run["config_json"]), run["status"])
        views.run.run_progress(budget_clock.clock_state(run, store.table("decisions", run_id), events), timeline)
        views.script_counts(events)
        views.final_summary(events)
        views.score_series(events, True)
        views.event_log(events, 60)
        times.append(time.perf_counter() - t0)
    return times


def browser_lag(root: Path, run_id: str, samples: int) -> list[float] | None:
    from browser_helpers import CHROMIUM, browser_page, open_page, running_app, wait_idle

    if not Path(CHROMIUM).exists():
        return None
    store = Store(root)
    lags = []
    with tempfile.TemporaryDirectory() as tmp, running_app(root, log=Path(tmp) / "streamlit.log") as url, \
            browser_page() as page:
        open_page(page, url)  # the app's services exist before the run looks active (no auto-resume)
        store.update_run(run_id, status="running")
        try:
            open_page(page, url, "run", query=f"run={run_id}")
            page.get_by_text("Event log").wait_for(timeout=60_000)
            for i in range(samples):
                time.sleep(random.uniform(0.0, POLL_SECONDS))  # a random moment in the poll cycle
                marker = f"bench marker {i} {random.random():.6f}"
                t0 = time.perf_counter()
                store.emit(run_id, "log", {"message": marker})
                page.get_by_text(marker).wait_for(state="attached", timeout=30_000)  # a dataframe cell
                lags.append(time.perf_counter() - t0)
                wait_idle(page)
        finally:
            store.update_run(run_id, status="finished")
    return lags


def fmt(xs: list[float]) -> str:
    return f"mean {statistics.fmean(xs):.3f} s, min {min(xs):.3f}, max {max(xs):.3f} (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--source", nargs=2, metavar=("STORE", "RUN_ID"), help="replicate this run (skip the real one)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = Store(root)
        t0 = time.monotonic()
        if args.source:
            src, src_id = Store(Path(args.source[0])), args.source[1]
        else:
            src, src_id = store, real_run(store, Path(tmp) / "out")
        made = time.monotonic() - t0
        n_src = len(src.table("executions", src_id))
        big, copies = replicate(src, src_id, store)
        n = {t: len(store.table(t, big)) for t in ("executions", "scripts", "attempts", "ablations")}
        n_events = len(store.events_after(big))
        print(f"source: a real run of the pipeline ({n_src} executions"
              + (f", made in {made:.0f} s)" if not args.source else ", given)"))
        print(f"big run: SYNTHETIC, the source's refinement rows replicated x{copies} with the store API: "
              f"{n['executions']} executions, {n['scripts']} scripts, {n['attempts']} attempts, "
              f"{n['ablations']} ablation rows, {n_events} events")
        times = render_times(root, big, args.repeats)
        print("\nrender time per page (AppTest, finished run):")
        for page, ts in sorted(times.items(), key=lambda kv: -statistics.fmean(kv[1])):
            print(f"  {page:22s} {fmt(ts)}")
        heaviest = max(times, key=lambda p: statistics.fmean(times[p]))
        worst = statistics.fmean(times[heaviest])
        print(f"heaviest page: {heaviest}, {worst:.3f} s — goal < 1 s: {'met' if worst < 1 else 'NOT met'}")

        frag = fragment_latency(store, big, max(5, args.repeats))
        mean_frag = statistics.fmean(frag)
        print(f"\nlive fragment's store reads + views per poll: {fmt(frag)}")
        print(f"live lag, estimated (poll {POLL_SECONDS:.0f} s): mean {POLL_SECONDS / 2 + mean_frag:.2f} s, "
              f"worst {POLL_SECONDS + mean_frag:.2f} s (+ drawing and the websocket)")
        if not args.no_browser:
            lags = browser_lag(root, big, max(5, args.repeats))
            if lags is None:
                print("live lag, measured: skipped (/usr/bin/chromium is missing)")
            else:
                print(f"live lag, measured in chromium (event written -> its text in the page): {fmt(lags)}")


if __name__ == "__main__":
    main()
