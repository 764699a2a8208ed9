"""Our agent (offline brain) against XGBoost, a random forest, FLAML and AutoGluon on real public tables.

Each contender gets the same wall-clock budget per task and the same task folder (MLE-bench layout,
built by bench/automl_tasks.py from tables shipped inside pip wheels), and every submission is graded
on the held-out answers by mlestar_core.grading.score_submission, the code that grades the agent.

    bash bench/setup_automl.sh                    # once: bench/.venv-automl (FLAML, AutoGluon, data)
    .venv/bin/python bench/bench_automl.py --budget 120 [--tasks a,b] [--contenders agent,xgboost,rf,flaml,autogluon]
        [--agent-python PATH --agent-repo PATH]   # the agent of another checkout, all else equal
        [--label NAME] [--check-tasks]

- agent: `python -m mlestar_core --store S run --brain offline --task DIR --out OUT --time-budget B`
  run by --agent-python in --agent-repo (default: this checkout and its .venv); only its CLI contract is
  relied on: exit code 0 and OUT/submission.csv.
- xgboost, rf: bench/contenders.py with the project's python (fixed defaults, no budget; time recorded).
- flaml, autogluon: bench/contenders.py with bench/.venv-automl/bin/python.

Contenders run one after another, each as a whole subprocess: wall time; peak memory of its process
tree (sum of the RSS of the process and all its descendants, sampled every 0.2 s: shared pages are
counted once per process, short spikes between samples are missed); and the largest single process's
peak RSS (ru_maxrss of the child from wait4, which covers the descendants it waited for).

Results go to bench/results/automl-<stamp>[-label].{json,md,html}, rewritten after every contender (a
crash loses nothing); the tasks, answers, logs, submissions and the agent's throwaway store are kept
in bench/results/automl-<stamp>[-label]/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from automl_tasks import TASKS  # noqa: E402
from contenders import task_spec  # noqa: E402

from mlestar_core import grading, metrics  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402

ALL_CONTENDERS = ["agent", "xgboost", "rf", "flaml", "autogluon"]
BUDGETED = {"agent", "flaml", "autogluon"}
AUTOML_PYTHON = BENCH / ".venv-automl" / "bin" / "python"
SAMPLE_EVERY = 0.2
OVER_BUDGET = 1.5  # wall time above this many budgets is flagged in the report
MEMORY_NOTE = ("peak_tree_mb: peak of the summed RSS of the contender's whole process tree, sampled every "
               f"{SAMPLE_EVERY} s with psutil (shared pages counted per process); max_rss_mb: ru_maxrss of the "
               "contender's subprocess from wait4, i.e. the largest single process (it or a descendant it "
               "waited for)")


# ----------------------------------------------------------------------------------------------
# Running one subprocess with time and memory measurement
# ----------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while the child has not exited (without reaping it, so wait4 still gets its rusage)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def measure(cmd: list[str], *, cwd: Path, log_path: Path, timeout: float,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run cmd to completion (or kill it after `timeout` s); wall time, exit code and memory peaks."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    peak = 0
    timed_out = False
    try:
        root = psutil.Process(proc.pid)
        seen[proc.pid] = root
    except psutil.NoSuchProcess:
        root = None
    while _alive(proc.pid):
        if root is not None:
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            for p in tree:
                seen.setdefault(p.pid, p)
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, total)
        if time.monotonic() - started > timeout and not timed_out:
            timed_out = True
            _terminate(proc.pid, seen)
        time.sleep(SAMPLE_EVERY)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    _terminate(None, seen)  # descendants left behind (none normally)
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "timed_out": timed_out,
            "peak_tree_mb": round(peak / 2**20, 1), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "load_after": round(os.getloadavg()[0], 2)}


def _terminate(leader: int | None, seen: dict[int, psutil.Process]) -> None:
    """SIGTERM, then SIGKILL, the processes this harness started (the leader's group and its seen tree)."""
    procs = [p for p in seen.values() if p.pid != leader and _running(p)]
    if leader is not None:
        try:
            os.killpg(leader, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(_running(p) for p in procs) or (leader and _alive(leader))):
        time.sleep(0.2)
    if leader is not None and _alive(leader):
        try:
            os.killpg(leader, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        if _running(p):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
        base = f"automl-{stamp}" + (f"-{args.label}" if args.label else "")
        self.results_dir = Path(args.results_dir).resolve()
        self.run_dir = self.results_dir / base
        self.json_path = self.results_dir / f"{base}.json"
        self.md_path = self.results_dir / f"{base}.md"
        self.html_path = self.results_dir / f"{base}.html"
        self.tasks: dict[str, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}

    # --- setup ---------------------------------------------------------------------------------

    def build_tasks(self, names: list[str]) -> None:
        automl_py = Path(self.args.automl_python)
        if not automl_py.exists():
            sys.exit(f"error: {automl_py} not found; run `bash bench/setup_automl.sh` first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([str(automl_py), str(BENCH / "automl_tasks.py"), "--out", str(self.run_dir),
                              "--tasks", ",".join(names)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"error: building the tasks failed:\n{out.stderr[-3000:]}")
        for entry in json.loads(out.stdout):
            task = load_task(entry["task_dir"])
            got = (task.target, task.task_type, task.metric)
            want = (entry["target"], entry["task_type"], entry["metric"])
            if got != want:
                sys.exit(f"error: {entry['name']}: mlestar_core reads (target, type, metric) {got}, "
                         f"the task was built for {want}")
            spec = task_spec(task)
            spec_path = self.run_dir / "specs" / f"{task.name}.json"
            spec_path.parent.mkdir(parents=True, exist_ok=True)
            spec_path.write_text(json.dumps(spec, indent=1))
            kinds: dict[str, list[str]] = {}
            for c in task.columns:
                kinds.setdefault(c.kind, []).append(c.name)
            self.tasks[task.name] = {
                **{k: entry[k] for k in ("name", "source", "task_type", "metric", "target", "special", "rows",
                                         "train_rows", "test_rows", "n_features", "missing_values",
                                         "task_dir", "answers")},
                "higher_is_better": task.higher_is_better, "submission_kind": task.submission_kind,
                "column_kinds": {k: v for k, v in kinds.items() if k != "id"}, "spec": str(spec_path),
            }

    def describe(self) -> None:
        print(f"{'task':<22} {'source':<28} {'rows':>6} {'type':<10} {'metric':<9} {'submission':<16} special")
        for t in self.tasks.values():
            print(f"{t['name']:<22} {t['source']:<28} {t['rows']:>6} {t['task_type']:<10} {t['metric']:<9} "
                  f"{t['submission_kind']:<16} {t['special']}")
            kinds = ", ".join(f"{k} {len(v)}" if len(v) > 3 else f"{k} {'/'.join(v)}"
                              for k, v in t["column_kinds"].items())
            missing = json.dumps(t["missing_values"]) if t["missing_values"] else "none"
            print(f"{'':<22} columns: {kinds}; missing: {missing}")

    def collect_meta(self) -> None:
        a = self.args
        agent_repo = Path(a.agent_repo).resolve()
        self.meta = {
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "budget_s": a.budget, "hard_timeout_s": self.hard_timeout(True),
            "contenders": a.contenders, "tasks": list(self.tasks),
            "agent": {"repo": str(agent_repo), "python": str(a.agent_python), "commit": _git(agent_repo),
                      "command": "python -m mlestar_core --store S run --brain offline --task DIR --out OUT "
                                 f"--time-budget {a.budget:g}"},
            "grader": {"repo": str(ROOT), "commit": _git(ROOT)},
            "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "platform": platform.platform(), "python": platform.python_version()},
            "versions": {"baselines": _versions(a.baseline_python, ["xgboost", "sklearn", "pandas"]),
                         "automl": _versions(a.automl_python, ["flaml", "autogluon.tabular", "lightgbm",
                                                               "catboost", "xgboost", "sklearn", "pandas"])},
            "memory_note": MEMORY_NOTE,
            "split": "seeded 75/25 train/test split (stratified for classification), see bench/automl_tasks.py",
        }

    def hard_timeout(self, budgeted: bool) -> float:
        a = self.args
        return a.hard_timeout if a.hard_timeout else (3 * a.budget + 300 if budgeted else 1800)

    # --- running -------------------------------------------------------------------------------

    def command(self, contender: str, task: dict[str, Any], work: Path) -> tuple[list[str], Path, Path]:
        """(command, cwd, submission path) for one contender on one task."""
        a = self.args
        if contender == "agent":
            out = work / "out"
            cmd = [str(a.agent_python), "-m", "mlestar_core", "--store", str(self.run_dir / "store"), "run",
                   "--brain", "offline", "--task", task["task_dir"], "--out", str(out),
                   "--time-budget", f"{a.budget:g}", "--seed", str(a.seed)]
            return cmd, Path(a.agent_repo).resolve(), out / "submission.csv"
        python = a.automl_python if contender in ("flaml", "autogluon") else a.baseline_python
        sub = work / "submission.csv"
        cmd = [str(python), str(BENCH / "contenders.py"), "--task", task["task_dir"], "--spec", task["spec"],
               "--contender", contender, "--budget", f"{a.budget:g}", "--out", str(sub), "--seed", str(a.seed)]
        return cmd, BENCH, sub

    def run_one(self, contender: str, name: str) -> dict[str, Any]:
        task = self.tasks[name]
        work = self.run_dir / "work" / name / contender
        work.mkdir(parents=True, exist_ok=True)
        cmd, cwd, sub_path = self.command(contender, task, work)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if contender == "agent":
            env["PYTHONPATH"] = str(cwd) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        row: dict[str, Any] = {"task": name, "contender": contender, "metric": task["metric"],
                               "budget_s": self.args.budget if contender in BUDGETED else None,
                               "load_before": round(os.getloadavg()[0], 2), "log": str(work / "log.txt"),
                               "command": cmd}
        m = measure(cmd, cwd=cwd, env=env, log_path=work / "log.txt",
                    timeout=self.hard_timeout(contender in BUDGETED))
        row.update(m)
        row["score"] = None
        if m["timed_out"]:
            row["status"] = "timeout"
            row["error"] = f"killed after {self.hard_timeout(contender in BUDGETED):.0f} s"
        elif m["rc"] != 0:
            row["status"] = "failed"
            row["error"] = f"exit code {m['rc']}: " + _tail(work / "log.txt")
        elif not sub_path.is_file():
            row["status"] = "no submission"
            row["error"] = f"exit code 0 but no {sub_path}"
        else:
            try:
                t = load_task(task["task_dir"])
                answers = pd.read_csv(task["answers"])
                row["score"] = grading.score_submission(t, pd.read_csv(sub_path), answers)
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - any unscorable submission is a result, not a crash
                row["status"] = "bad submission"
                row["error"] = f"{type(exc).__name__}: {exc}"
        row["submission"] = str(sub_path) if sub_path.is_file() else None
        if contender == "autogluon" and "retrying without dynamic stacking" in _tail(work / "log.txt", 100_000):
            row["note"] = "AutoGluon's DyStack sub-fit fitted no model; refit without dynamic stacking"
        return row

    def run(self) -> None:
        names = list(self.tasks)
        total = len(names) * len(self.args.contenders)
        i = 0
        for name in names:
            task = self.tasks[name]
            for contender in self.args.contenders:
                i += 1
                budget = f"budget {self.args.budget:g} s" if contender in BUDGETED else "no budget"
                print(f"[{i}/{total}] {name} ({task['metric']}) · {contender} ({budget}) ...", flush=True)
                try:
                    row = self.run_one(contender, name)
                except Exception as exc:  # noqa: BLE001 - the harness keeps going; the row says what broke
                    row = {"task": name, "contender": contender, "metric": task["metric"], "score": None,
                           "status": "harness error", "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()}
                self.results.append(row)
                score = "—" if row["score"] is None else f"{row['score']:.5g}"
                extra = f"  [{row['status']}: {str(row.get('error', ''))[:200]}]" if row["status"] != "ok" else ""
                extra += f"  ({row['note']})" if row.get("note") else ""
                print(f"      {task['metric']} {score}   wall {row.get('wall_s', 0):.1f} s   "
                      f"cpu {row.get('cpu_s', 0):.0f} s   load {row.get('load_before', 0):.1f}   "
                      f"peak tree {row.get('peak_tree_mb', 0):.0f} MB   max rss {row.get('max_rss_mb', 0):.0f} MB"
                      f"{extra}", flush=True)
                self.save()

    # --- reporting -----------------------------------------------------------------------------

    def score(self, name: str, contender: str) -> tuple[bool, float | None]:
        """(attempted, score) of a contender on a task."""
        for r in self.results:
            if r["task"] == name and r["contender"] == contender:
                return True, r["score"]
        return False, None

    def row(self, name: str, contender: str) -> dict[str, Any] | None:
        return next((r for r in self.results if r["task"] == name and r["contender"] == contender), None)

    def beats(self) -> list[str]:
        ref = "agent"
        if ref not in self.args.contenders:
            return []
        lines = []
        for other in self.args.contenders:
            if other == ref:
                continue
            n = wins = ties = 0
            for name, task in self.tasks.items():
                done_a, a = self.score(name, ref)
                done_b, b = self.score(name, other)
                if not (done_a and done_b):
                    continue
                n += 1
                if metrics.is_better(a, b, task["higher_is_better"]):
                    wins += 1
                elif a is not None and b is not None and a == b:
                    ties += 1
            lines.append(f"agent beats {other} on {wins}/{n} tasks" + (f" ({ties} tied)" if ties else ""))
        return lines

    def mean_ranks(self) -> dict[str, float]:
        ranks: dict[str, list[int]] = {c: [] for c in self.args.contenders}
        for name, task in self.tasks.items():
            rows = [(c, self.score(name, c)) for c in self.args.contenders]
            if not all(done for _, (done, _) in rows):
                continue
            for c, (_, s) in rows:
                better = sum(metrics.is_better(o, s, task["higher_is_better"]) for _, (_, o) in rows)
                ranks[c].append(1 + better)
        return {c: sum(v) / len(v) for c, v in ranks.items() if v}

    def markdown(self) -> str:
        cs = self.args.contenders
        a = self.args
        lines = [f"### AutoML benchmark: {a.budget:g} s per task and contender", "",
                 f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, no GPU; agent commit "
                 f"`{self.meta.get('agent', {}).get('commit', '?')}`. Held-out score of each contender "
                 "(best in bold); xgboost and rf are fixed defaults without a budget.", "",
                 "| task | type | metric | rows (train/test) | " + " | ".join(cs) + " |",
                 "|---|---|---|---|" + "---:|" * len(cs)]
        for name, t in self.tasks.items():
            scores = [self.score(name, c)[1] for c in cs]
            best = metrics.best_index(scores, t["higher_is_better"])
            best_value = scores[best] if best is not None else None
            cells = []
            for c, s in zip(cs, scores, strict=True):
                r = self.row(name, c)
                if r is None:
                    cells.append("")
                elif s is None:
                    cells.append(r["status"])
                else:
                    text = _fmt(s)
                    cells.append(f"**{text}**" if best_value is not None and s == best_value else text)
            arrow = "↑" if t["higher_is_better"] else "↓"
            lines.append(f"| {name} | {t['task_type']} | {t['metric']} {arrow} | {t['train_rows']}/{t['test_rows']} | "
                         + " | ".join(cells) + " |")
        ranks = self.mean_ranks()
        if ranks:
            lines.append("| *mean rank* | | | | " + " | ".join(f"*{ranks[c]:.2f}*" if c in ranks else "" for c in cs)
                         + " |")
        lines += ["", "Wall time (s) and peak memory of the process tree (MB):", "",
                  "| task | " + " | ".join(cs) + " |", "|---|" + "---:|" * len(cs)]
        flagged = False
        for name in self.tasks:
            cells = []
            for c in cs:
                r = self.row(name, c)
                ok = r is not None and "wall_s" in r
                over = ok and c in BUDGETED and r["wall_s"] > OVER_BUDGET * self.args.budget
                flagged = flagged or over
                cells.append(f"{r['wall_s']:.0f} s{' ⚠' if over else ''} · {r['peak_tree_mb']:.0f} MB" if ok else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if flagged:
            lines.append(f"\n⚠ more than {OVER_BUDGET:g} × the budget: the contender overran it (e.g. FLAML does not "
                         "interrupt a trial that starts just before the deadline).")
        lines += [""] + [f"- {line}" for line in self.beats()]
        lines += ["", f"Memory: {MEMORY_NOTE}.", ""]
        return "\n".join(lines)

    def html(self) -> str:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        names = [n for n in self.tasks if any(r["task"] == n for r in self.results)]
        cs = self.args.contenders
        colors = dict(zip(ALL_CONTENDERS, ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"], strict=True))
        parts = []
        if names:
            cols = 3
            rows = (len(names) + cols - 1) // cols
            titles = [f"{n}: {self.tasks[n]['metric']} ({'higher' if self.tasks[n]['higher_is_better'] else 'lower'}"
                      " is better)" for n in names]
            fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.5 / max(rows, 1))
            for i, n in enumerate(names):
                for c in cs:
                    s = self.score(n, c)[1]
                    fig.add_trace(go.Bar(x=[c], y=[s], name=c, marker_color=colors.get(c), showlegend=i == 0,
                                         legendgroup=c, text=[_fmt(s) if s is not None else "fail"],
                                         textposition="auto"), row=i // cols + 1, col=i % cols + 1)
            fig.update_layout(title=f"Held-out score per task ({self.args.budget:g} s budget)",
                              height=320 * rows, barmode="group")
            parts.append(fig.to_html(full_html=False, include_plotlyjs=True))
            for key, label in (("wall_s", "Wall time (s)"), ("peak_tree_mb", "Peak memory of the process tree (MB)")):
                fig = go.Figure()
                for c in cs:
                    ys = [(self.row(n, c) or {}).get(key) for n in names]
                    fig.add_trace(go.Bar(x=names, y=ys, name=c, marker_color=colors.get(c)))
                fig.update_layout(title=label, barmode="group", height=420)
                parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
        md = self.markdown().replace("&", "&amp;").replace("<", "&lt;")
        return ("<!doctype html><html><head><meta charset='utf-8'><title>AutoML benchmark</title></head><body>"
                + "".join(parts) + f"<pre>{md}</pre></body></html>")

    def save(self) -> None:
        data = {"meta": {**self.meta, "updated": dt.datetime.now().isoformat(timespec="seconds")},
                "tasks": self.tasks, "results": self.results, "summary": self.beats(),
                "mean_rank": self.mean_ranks()}
        _write(self.json_path, json.dumps(data, indent=1, default=str))
        _write(self.md_path, self.markdown())
        try:
            _write(self.html_path, self.html())
        except Exception as exc:  # noqa: BLE001 - a chart problem must not stop the benchmark
            print(f"      (chart not written: {type(exc).__name__}: {exc})", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _tail(path: Path, n: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text[-n:].split())


def _git(repo: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _versions(python: str | Path, modules: list[str]) -> dict[str, str]:
    code = ("import importlib, json, sys\nout = {}\nfor m in sys.argv[1:]:\n    try:\n"
            "        out[m] = importlib.import_module(m).__version__\n    except Exception as e:\n"
            "        out[m] = 'missing'\nprint(json.dumps(out))")
    try:
        res = subprocess.run([str(python), "-c", code, *modules], capture_output=True, text=True, timeout=120,
                             check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {m: "unknown" for m in modules}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=120.0, help="seconds per task for agent, flaml, autogluon")
    p.add_argument("--tasks", default="", help=f"comma-separated subset of: {', '.join(TASKS)}")
    p.add_argument("--contenders", default=",".join(ALL_CONTENDERS),
                   help="comma-separated subset (in this order) of: %(default)s")
    p.add_argument("--agent-repo", default=str(ROOT), help="checkout whose mlestar_core is the agent")
    p.add_argument("--agent-python", default=None, help="python for the agent (default: AGENT_REPO/.venv/bin/python)")
    p.add_argument("--automl-python", default=str(AUTOML_PYTHON), help="python of bench/.venv-automl")
    p.add_argument("--baseline-python", default=sys.executable, help="python for xgboost and rf (default: this one)")
    p.add_argument("--results-dir", default=str(BENCH / "results"))
    p.add_argument("--label", default="", help="suffix of the result files, e.g. before / after")
    p.add_argument("--seed", type=int, default=0, help="seed passed to every contender")
    p.add_argument("--hard-timeout", type=float, default=None,
                   help="kill a contender after this many seconds (default: 3 x budget + 300 for budgeted "
                        "contenders, 1800 for xgboost/rf)")
    p.add_argument("--check-tasks", action="store_true",
                   help="only build the tasks, load each with mlestar_core and print them")
    args = p.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t] or list(TASKS)
    args.contenders = [c for c in args.contenders.split(",") if c]
    bad = [t for t in args.tasks if t not in TASKS] + [c for c in args.contenders if c not in ALL_CONTENDERS]
    if bad:
        p.error(f"unknown task or contender: {', '.join(bad)}")
    if args.agent_python is None:
        args.agent_python = str(Path(args.agent_repo).resolve() / ".venv" / "bin" / "python")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.build_tasks(args.tasks)
    print(f"built {len(bench.tasks)} tasks in {bench.run_dir}/tasks (answers in {bench.run_dir}/answers); "
          "each loads with mlestar_core.task.load_task with the intended target, type and metric")
    bench.describe()
    if args.check_tasks:
        return 0
    bench.collect_meta()
    print(f"contenders: {', '.join(args.contenders)}; budget {args.budget:g} s; agent {args.agent_python} in "
          f"{args.agent_repo} ({bench.meta['agent']['commit']})", flush=True)
    bench.save()
    bench.run()
    bench.save()
    print()
    print(bench.markdown())
    print(f"results: {bench.json_path}\n         {bench.md_path}\n         {bench.html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
