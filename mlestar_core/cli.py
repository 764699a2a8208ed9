"""Command line: a thin layer over the library (`python -m mlestar_core --help`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .brains import BRAINS, DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL, Brain, BrainConfigError, make_brain
from .brains.llm.settings import LLMSettings
from .config import RunConfig, approval_problems, cost_problems
from .dask_executor import ExecutorError, default_spec, spec_problems
from .lease import RunOwnedElsewhere, lease_state
from .model import TaskError
from .pipeline import Pipeline, create_run
from .steps import NoWorkingSolution
from .store import Store

DEFAULT_HOME = Path(__file__).resolve().parents[1] / "runs"


def default_store_dir() -> Path:
    return Path(os.environ.get("MLESTAR_HOME") or DEFAULT_HOME)


def planned_steps(config: RunConfig) -> int:
    """How many memoised steps a full run has (for the progress bar)."""
    per_track = 2 + config.outer_steps * (2 + config.inner_steps)
    return 3 + config.num_solutions * per_track + config.ensemble_rounds + 1


class Progress:
    """A one-line progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, budget: float | None, stream: TextIO = sys.stderr) -> None:
        self.total, self.budget, self.stream = total, budget, stream
        self.done, self.best, self.phase = 0, None, "starting"
        self.start = time.monotonic()
        self.tty = stream.isatty()
        self.waited = 0.0  # the budget clock's stops (waiting for a human, paused): not counted
        self.stopped_at: float | None = None

    def agent_time(self) -> float:
        now = time.monotonic()
        return now - self.start - self.waited - (now - self.stopped_at if self.stopped_at is not None else 0.0)

    def _bar(self) -> str:
        frac = min(1.0, self.done / max(1, self.total))
        if self.budget:
            frac = max(frac, min(1.0, self.agent_time() / self.budget))
        filled = int(frac * 30)
        best = "—" if self.best is None else f"{self.best:.5g}"
        return (f"[{'#' * filled}{'-' * (30 - filled)}] {frac:4.0%}  {self.phase:<22.22}  best {best}"
                f"  {self.agent_time():5.0f}s")

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n" + self._bar())
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "step_started":
            self.phase = payload["key"]
        elif kind == "step_done":
            self.done += 1
        elif kind == "best_score":
            self.best = payload["score"]
        elif kind == "budget_clock":
            if payload.get("stopped"):
                self.stopped_at = self.stopped_at or time.monotonic()
            elif self.stopped_at is not None:
                self.waited += time.monotonic() - self.stopped_at
                self.stopped_at = None
        if kind == "candidate_scored":
            self.line(f"  initial candidate {payload['label']}: {payload['score']}")
        elif kind == "merge":
            self.line(f"  merge {payload['reference']} into {payload['base']}: {payload['score']}"
                      f" ({'kept' if payload['kept'] else 'not better, stop merging'})")
        elif kind == "block_chosen":
            self.line(f"  track {payload['track'] + 1}: refining block '{payload['block']}'")
        elif kind == "attempt_scored":
            self.line(f"    attempt {payload['inner'] + 1}: {payload['score']} (from {payload.get('baseline')})")
        elif kind == "ensemble_round":
            self.line(f"  ensemble round {payload['round'] + 1}: {payload['score']}")
        elif kind == "approval_needed":
            self.line(f"  waiting for a decision on plan #{payload['decision_id']} "
                      f"(python -m mlestar_core decide {payload['decision_id']} approve)")
        elif kind == "approval_waiting":  # (approval_needed is written by the store, not told to this listener)
            self.line(f"  {payload.get('message')} (python -m mlestar_core decide {payload['decision_id']} approve)")
        elif kind in ("budget_clock", "approval_decided", "edit_failed", "edit_repaired") and payload.get("message"):
            self.line(f"  {payload['message']}")
        elif kind == "budget_exhausted":
            self.line("  time budget reached: wrapping up with the best solution so far")
        elif kind == "cost_cap_reached":
            self.line(f"  cost cap ${payload.get('cap')} reached (spent ${payload.get('spent', 0):.4f}): "
                      "wrapping up with the best solution so far")
        elif kind == "brain_call" and payload.get("error") and not str(payload["error"]).startswith("answer"):
            self.line(f"  brain call {payload['role']} failed: {str(payload['error'])[:160]}")
        elif self.tty:
            self.stream.write("\r\033[K" + self._bar())
            self.stream.flush()


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says why."""


def _read_prices(path: str) -> dict[str, list[float]]:
    """A price table file: JSON or TOML, {"model": [usd_per_1M_in, usd_per_1M_out]}."""
    import tomllib

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"--prices {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and len(v) in (2, 3) for v in data.values()):
        raise UsageError(f'--prices {path}: expected {{"model": [usd_per_1M_in, usd_per_1M_out], ...}} (a third '
                         'number, USD per 1000 web searches, is optional)')
    try:
        return {str(k): [float(x) for x in v] for k, v in data.items()}
    except (TypeError, ValueError):
        raise UsageError(f"--prices {path}: every price must be numbers") from None


def _parse_price(item: str) -> tuple[str, list[float]]:
    """--price MODEL=IN,OUT[,SEARCH]: USD per 1M input and output tokens, and optionally per 1000 web searches."""
    from .brains.llm.pricing import parse_price

    model, sep, numbers = item.rpartition("=")
    try:
        if not sep or not model.strip():
            raise ValueError("use MODEL=IN,OUT")
        price = [float(x) for x in numbers.split(",")]
        parse_price(price)
    except ValueError as e:
        raise UsageError(f"--price {item!r}: {e} (MODEL=IN,OUT or MODEL=IN,OUT,SEARCH: USD per 1M input tokens, "
                         "per 1M output tokens, per 1000 web searches)") from None
    return model.strip(), price


def _llm_from_args(args: argparse.Namespace) -> LLMSettings:
    llm = LLMSettings(model=args.model or "", base_url=args.base_url or "", vertex=args.vertex,
                      project=args.project or "", search=not args.no_search,
                      cassette=str(Path(args.cassette).resolve()) if args.cassette else "")
    if args.location:
        llm.location = args.location
    if args.llm_timeout is not None:
        llm.timeout = args.llm_timeout
    if args.max_output_tokens is not None:
        llm.max_output_tokens = args.max_output_tokens
    if args.llm_retries is not None:
        llm.max_retries = args.llm_retries
    for item in args.role_model or []:
        role, sep, model = item.partition("=")
        from .prompts import ROLES

        if not sep or role not in ROLES or not model:
            raise UsageError(f"--role-model {item!r}: use ROLE=MODEL with ROLE one of {', '.join(ROLES)}")
        llm.role_models[role] = model
    if args.prices:
        llm.prices = _read_prices(args.prices)
    for item in getattr(args, "price", None) or []:  # after --prices: a price given here wins
        model, price = _parse_price(item)
        llm.prices[model] = price
    return llm


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    c = RunConfig(brain=args.brain, seed=args.seed, time_budget=args.time_budget,
                  require_approval=args.require_approval, llm=_llm_from_args(args), cost_cap=args.cost_cap)
    c.executor = getattr(args, "executor", None) or default_spec()
    if spec_problems(c.executor):
        raise UsageError("; ".join(spec_problems(c.executor)))
    if getattr(args, "no_explain", False):
        c.explain_at_end = False
    if getattr(args, "auto_approve_after", None) is not None:  # minutes on the command line, seconds in the config
        c.auto_approve_after = args.auto_approve_after * 60.0
    for flag, attr in [("models", "num_models"), ("outer", "outer_steps"), ("inner", "inner_steps"),
                       ("solutions", "num_solutions"), ("ensemble_rounds", "ensemble_rounds"),
                       ("workers", "workers"), ("script_timeout", "script_timeout"),
                       ("ablation_repeats", "ablation_repeats"), ("folds", "n_folds"),
                       ("fold_repeats", "n_fold_repeats")]:
        value = getattr(args, flag)
        if value is not None:
            setattr(c, attr, value)
    if c.brain == "replay":
        from .brains.llm.replay import CassetteError, load_cassette, replay_config

        if not args.cassette:
            raise UsageError("--brain replay needs --cassette FILE (export one with `export-cassette RUN_ID`)")
        try:
            c = replay_config(load_cassette(args.cassette), c)
        except CassetteError as e:
            raise UsageError(str(e)) from None
    return c


def _run_pipeline(store: Store, run_id: str, brain: Brain | None = None) -> int:
    run = store.get_run(run_id) or {}
    config = RunConfig.from_dict(json.loads(run["config_json"]))
    progress = Progress(planned_steps(config), config.time_budget)
    try:
        pipeline = Pipeline(store, run_id, listener=progress, brain=brain)
    except BrainConfigError as exc:
        store.pause_with_reason(run_id, f"the brain cannot start: {exc}")
        print(f"error: the {config.brain} brain cannot start: {exc}\n"
              f"fix it, then continue with: python -m mlestar_core resume {run_id}", file=sys.stderr)
        return 2
    except ExecutorError as exc:  # e.g. the Dask scheduler is down: nothing ran yet, the run can be resumed
        store.pause_with_reason(run_id, f"scripts cannot run: {exc}")
        print(f"error: scripts cannot run: {exc}\n"
              f"fix it, then continue with: python -m mlestar_core resume {run_id}", file=sys.stderr)
        return 2
    try:
        summary = pipeline.run()
    except RunOwnedElsewhere as exc:  # a second driver of the same run: refuse, change nothing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NoWorkingSolution as exc:  # Pipeline.run marked the run failed with this message; a traceback adds nothing
        if progress.tty:
            sys.stderr.write("\n")
        print(f"error: run {run_id} failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        store.update_run(run_id, status="stopped")
        pipeline.executor.cancel_all()
        print(f"\nstopped; continue with: python -m mlestar_core resume {run_id}", file=sys.stderr)
        return 130
    if progress.tty:
        sys.stderr.write("\n")
    if summary.get("status") == "lease_lost":
        print(f"run {run_id}: another process took it over; this one stopped", file=sys.stderr)
        return 1
    if summary.get("status") == "stopped":
        print(f"run {run_id} stopped", file=sys.stderr)
        return 1
    if summary.get("status") == "paused":
        print(f"run {run_id} paused: {summary.get('reason')}\n"
              f"nothing done is lost; continue with: python -m mlestar_core resume {run_id}", file=sys.stderr)
        return 3
    print(f"run {run_id} finished")
    print(f"  validation {summary['metric']}: {summary['validation_score']}"
          f"  (locked hold-out: {summary['holdout_score']}, trivial baseline: {summary['baseline_score']})")
    for key in ("submission", "solution", "report"):
        if summary.get(key):
            print(f"  {key}: {summary[key]}")
    from .competition import load_grade  # an MLE-bench folder: the grade on its private answers

    if (grade := load_grade(store.run_dir(run_id))) is not None:
        print(f"  competition: {grade.headline()}")
    return 0


def _known_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's row, or None after saying on stderr that the store has no such run (the caller exits 2)."""
    run = store.get_run(run_id)
    if run is None:
        print(f"error: no run {run_id!r} in {store.root}", file=sys.stderr)
    return run


def cmd_run(args: argparse.Namespace) -> int:
    from .task import load_task
    from .uploads import save_zip_file

    # Every check of the task happens here, before create_run: a bad input leaves no run behind.
    try:
        task_path, name = Path(args.task), None
        if task_path.suffix.lower() == ".zip":  # unpacked safely into the store, as the app does with an upload
            task_path, name = save_zip_file(Path(args.store), task_path), task_path.stem
        task = load_task(task_path, target=args.target, metric=args.metric, name=name)
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable files (permissions, a folder named .csv): say so, not a traceback
        print(f"error: cannot read the task {args.task}: {exc}", file=sys.stderr)
        return 2
    try:
        config = _config_from_args(args)
        problems = cost_problems(config)  # a cost cap that could not hold: refused before anything else
        if problems:
            hint = " (--price MODEL=IN,OUT)" if any("no known price" in p for p in problems) else ""
            raise UsageError("; ".join(problems) + hint)
        if approval_problems(config):
            raise UsageError("--auto-approve-after MINUTES needs --require-approval and a positive number of "
                             "minutes")
        brain = make_brain(config.brain, config.llm)  # fail before creating a run: no key, no cassette, ...
    except (UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrainConfigError as exc:
        print(f"error: the {config.brain} brain cannot start: {exc}", file=sys.stderr)
        return 2
    store = Store(Path(args.store))
    run_id = create_run(store, task, config, out_dir=Path(args.out).resolve())
    model = config.llm.model or {"gemini": DEFAULT_GEMINI_MODEL, "openai": DEFAULT_OPENAI_MODEL}.get(config.brain, "")
    print(f"run {run_id}: {task.name} ({task.task_type}, metric {task.metric}), brain {config.brain}"
          f"{f' ({model})' if model else ''}, store {store.root}", file=sys.stderr)
    return _run_pipeline(store, run_id, brain)


def cmd_resume(args: argparse.Namespace) -> int:
    store = Store(Path(args.store))
    run = _known_run(store, args.run_id)
    if run is None:
        return 2
    if run["status"] == "finished":
        print(f"run {args.run_id} is already finished", file=sys.stderr)
        return 0
    state = lease_state(store, args.run_id)
    if state.live:  # refuse before changing anything of a run another process drives
        print(f"error: run {args.run_id} is being driven by another {state.description}; wait for it to end "
              "(or follow it in the app)", file=sys.stderr)
        return 2
    store.update_run(args.run_id, control="run", pause_reason=None)
    return _run_pipeline(store, args.run_id)


def cmd_export_cassette(args: argparse.Namespace) -> int:
    from .exports import cassette_json

    store = Store(Path(args.store))
    if _known_run(store, args.run_id) is None:
        return 2
    data = cassette_json(store, args.run_id)
    Path(args.out).write_bytes(data)
    n = len(json.loads(data)["calls"])
    print(f"wrote {n} recorded answers to {args.out}; replay with: python -m mlestar_core run --brain replay "
          f"--cassette {args.out} --task TASK --out DIR", file=sys.stderr)
    return 0


def _write_handoff(args: argparse.Namespace, kind: str) -> int:
    """export-notebook / export-bundle: a finished run's hand-off file (exit 2 for an unknown or unfinished run)."""
    from .kept import RunNotUsable

    store = Store(Path(args.store))
    try:
        if kind == "notebook":
            from .notebook import notebook_bytes

            data = notebook_bytes(store, args.run_id)
        else:
            from .bundle import build_bundle

            data = build_bundle(store, args.run_id)
    except RunNotUsable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    how = ("run its cells top to bottom in a folder holding the task's files under ./input/" if kind == "notebook"
           else f"unzip it, then run: python mlestar-{args.run_id}/reproduce.py")
    print(f"wrote {out} ({len(data) / 1024:.0f} KB); {how}", file=sys.stderr)
    return 0


def cmd_export_notebook(args: argparse.Namespace) -> int:
    return _write_handoff(args, "notebook")


def cmd_export_bundle(args: argparse.Namespace) -> int:
    return _write_handoff(args, "bundle")


def cmd_mlflow_log(args: argparse.Namespace) -> int:
    from .mlflow_log import configured_uri, log_run

    store = Store(Path(args.store))
    if _known_run(store, args.run_id) is None:
        return 2
    uri = configured_uri(args.tracking_uri)
    if uri is None:
        print("error: no MLflow tracking URI: set MLFLOW_TRACKING_URI or pass --tracking-uri", file=sys.stderr)
        return 2
    result = log_run(store, args.run_id, uri, experiment_name=args.experiment)
    assert result is not None  # a URI was given
    print(result.describe(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def cmd_predict(args: argparse.Namespace) -> int:
    from .kept import RunNotUsable
    from .predict import PredictError, PredictFailed, predict_rows

    store = Store(Path(args.store))
    try:
        result = predict_rows(store, args.run_id, Path(args.input), Path(args.output),
                              drop_extra=args.drop_extra_columns, refit=args.refit)
    except (RunNotUsable, PredictError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PredictFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"note: {warning}", file=sys.stderr)
    print(f"wrote {args.output}: {result.describe()}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import ExplainFailed, explain_run
    from .kept import RunNotUsable

    store = Store(Path(args.store))
    try:
        result = explain_run(store, args.run_id)
    except RunNotUsable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExplainFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result["status"] != "ok":
        print(f"no explanation: {result['reason']}", file=sys.stderr)
        return 1
    rows = result["rows"]
    print(f"What drives the model of run {args.run_id} (script #{result['script_id']}): permutation importance on "
          f"{rows['used']} {rows['source']} rows, {result['n_repeats']} repeats, {result['metric_title']} "
          f"{result['baseline_score']:.5g}; model {result['model']}")
    print("importance = how much worse the metric gets when the feature's values are shuffled")
    for f in result["features"][: args.top]:
        print(f"  {f['name']:<32.32} {f['importance_mean']:>10.4g} ± {f['importance_std']:.2g}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = Store(Path(args.store))
    runs = store.list_runs()
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    print(f"{'run':<24} {'task':<22} {'brain':<8} {'status':<9} {'best':>10} {'hold-out':>10}")
    for r in runs:
        best = "" if r["best_score"] is None else f"{r['best_score']:.5g}"
        hold = "" if r["holdout_score"] is None else f"{r['holdout_score']:.5g}"
        print(f"{r['id']:<24} {r['name'][:22]:<22} {r['brain']:<8} {r['status']:<9} {best:>10} {hold:>10}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    store = Store(Path(args.store))
    d = store.get_decision(args.decision_id)
    if d is None or d["status"] != "pending":
        print(f"error: no pending decision #{args.decision_id}", file=sys.stderr)
        return 2
    status = {"approve": "approved", "reject": "rejected", "edit": "edited"}[args.action]
    store.decide(args.decision_id, status, edited_plan=args.plan)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """(Re-)grade a run of an MLE-bench task on the competition's private answers and leaderboard."""
    from .competition import grade_competition, save_grade
    from .exports import output_dir
    from .model import task_from_dict
    from .report import write_report

    store = Store(Path(args.store))
    run = _known_run(store, args.run_id)
    if run is None:
        return 2
    task = task_from_dict(json.loads(run["task_json"]))
    out_dir = output_dir(store, run)
    submission = Path(args.submission) if args.submission else out_dir / "submission.csv"
    grade = grade_competition(task, submission if submission.is_file() else None)
    if grade is None:
        print(f"error: the task of run {args.run_id} ({task.data_dir}) is not an MLE-bench competition folder "
              "(prepared/public/ beside prepared/private/): there are no answers to grade against", file=sys.stderr)
        return 2
    if args.submission is None:  # the run's own submission: its saved grade and report follow
        save_grade(store.run_dir(args.run_id), grade)
        final = next((s for s in store.steps(args.run_id) if s["key"] == "final" and s["result_json"]), None)
        if final is not None:
            write_report(store, args.run_id, json.loads(final["result_json"]), out_dir)
    print(grade.headline())
    for note in grade.notes:
        print(f"  note: {note}")
    return 0 if grade.graded else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlestar_core",
                                     description="MLE-STAR: retrieve, refine and ensemble ML solutions.")
    parser.add_argument("--store", default=str(default_store_dir()), help="run store folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run MLE-STAR on a task")
    run.add_argument("--task", required=True,
                     help="task folder (MLE-bench layout), a CSV file, or a .zip of a task folder")
    run.add_argument("--out", required=True, help="where submission.csv, solution.py and report.md go")
    run.add_argument("--brain", default="offline", choices=list(BRAINS),
                     help="; ".join(f"{k}: {v}" for k, v in BRAINS.items()))
    run.add_argument("--time-budget", type=float, default=None, help="seconds for the whole run")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--target", default=None, help="target column (needed for a bare CSV)")
    run.add_argument("--metric", default=None, help="override the metric derived from the description")
    run.add_argument("-M", "--models", type=int, default=None, help="models to retrieve (default 4)")
    run.add_argument("-T", "--outer", type=int, default=None, help="outer refinement steps (default 2)")
    run.add_argument("-K", "--inner", type=int, default=None, help="attempts per block (default 3)")
    run.add_argument("-L", "--solutions", type=int, default=None, help="solution tracks (default 2)")
    run.add_argument("-R", "--ensemble-rounds", type=int, default=None, help="ensemble rounds (default 3)")
    run.add_argument("--workers", type=int, default=None, help="scripts run at once (default: cores)")
    run.add_argument("--executor", default=None, metavar="SPEC",
                     help="where scripts run: 'local' (this machine) or dask://HOST:PORT[?shared=1] (a Dask "
                          "scheduler's workers, docs/scaling.md); default: $MLESTAR_EXECUTOR or local")
    run.add_argument("--ablation-repeats", type=int, default=None,
                     help="runs of each ablation with other model seeds (default 1; the error bars come from the "
                          "per-fold deltas)")
    run.add_argument("--folds", type=int, default=None,
                     help="K of the evaluation protocol (1 = one hold-out split; default: chosen by the engine "
                          "from the rows and a measured probe fit)")
    run.add_argument("--fold-repeats", type=int, default=None, help="repeats of K-fold, with --folds (default 1)")
    run.add_argument("--script-timeout", type=float, default=None, help="seconds per script (default 300)")
    run.add_argument("--require-approval", action="store_true",
                     help="wait for `decide` before each refinement plan (the time waiting does not count "
                          "against --time-budget)")
    run.add_argument("--auto-approve-after", type=float, default=None, metavar="MINUTES",
                     help="with --require-approval: a plan nobody decided on within MINUTES is approved by the run "
                          "itself (recorded as auto-approved, not as a person's approval); default: wait")
    run.add_argument("--no-explain", action="store_true",
                     help="skip what-drives-the-model at the end of the run (compute it later with `explain RUN_ID`)")
    llm = run.add_argument_group("LLM brains (keys come from GEMINI_API_KEY / GOOGLE_API_KEY / OPENAI_API_KEY or "
                                 ".streamlit/secrets.toml, never from the command line)")
    llm.add_argument("--model", default=None,
                     help=f"model for every role (gemini default: {DEFAULT_GEMINI_MODEL}, "
                          f"openai: {DEFAULT_OPENAI_MODEL})")
    llm.add_argument("--role-model", action="append", metavar="ROLE=MODEL", help="model for one role (repeatable)")
    llm.add_argument("--base-url", default=None,
                     help="gemini: another endpoint (proxy, test server); openai: the server, e.g. "
                          "http://localhost:11434/v1")
    llm.add_argument("--vertex", action="store_true", help="gemini through Vertex AI (with --project, --location)")
    llm.add_argument("--project", default=None, help="Google Cloud project for Vertex AI")
    llm.add_argument("--location", default=None, help="Vertex AI location (default us-central1)")
    llm.add_argument("--no-search", action="store_true", help="gemini: retrieve without Google Search grounding")
    llm.add_argument("--cassette", default=None, help="replay: the cassette file to answer from")
    llm.add_argument("--cost-cap", type=float, default=None, help="USD; the run wraps up when its calls cost this")
    llm.add_argument("--prices", default=None, help='JSON/TOML price table {"model": [usd_per_1M_in, usd_per_1M_out]}')
    llm.add_argument("--price", action="append", metavar="MODEL=IN,OUT[,SEARCH]",
                     help="the price of one model: USD per 1M input tokens, per 1M output tokens and optionally per "
                          "1000 web searches (repeatable; wins over --prices). A model without a known price "
                          "cannot run under --cost-cap")
    llm.add_argument("--llm-timeout", type=float, default=None, help="seconds per brain call (default 180)")
    llm.add_argument("--max-output-tokens", type=int, default=None,
                     help="longest answer a call may get (default 16384); a cost cap reserves this per call")
    llm.add_argument("--llm-retries", type=int, default=None, help="retries on 429/5xx before pausing (default 4)")
    run.set_defaults(fn=cmd_run)

    resume = sub.add_parser("resume", help="continue a run from its last completed step")
    resume.add_argument("run_id")
    resume.set_defaults(fn=cmd_resume)

    export = sub.add_parser("export-cassette", help="write a run's brain answers to a cassette file")
    export.add_argument("run_id")
    export.add_argument("-o", "--out", required=True, help="the cassette file to write (.json)")
    export.set_defaults(fn=cmd_export_cassette)

    nb = sub.add_parser("export-notebook", help="write a finished run's final solution as a Jupyter notebook")
    nb.add_argument("run_id")
    nb.add_argument("-o", "--out", required=True, help="the notebook to write (.ipynb)")
    nb.set_defaults(fn=cmd_export_notebook)

    bundle = sub.add_parser("export-bundle", help="write a zip that reproduces a finished run's submission with one "
                                                  "command (solution, data hashes, pins, reproduce.py)")
    bundle.add_argument("run_id")
    bundle.add_argument("-o", "--out", required=True, help="the zip to write (.zip)")
    bundle.set_defaults(fn=cmd_export_bundle)

    mlf = sub.add_parser("mlflow-log", help="log (or update) a run's MLflow run: params, metrics, artifacts")
    mlf.add_argument("run_id")
    mlf.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    mlf.add_argument("--experiment", default=None,
                     help="default: MLFLOW_EXPERIMENT_NAME, else mlestar/<task name>")
    mlf.set_defaults(fn=cmd_mlflow_log)

    predict = sub.add_parser("predict", help="predict new rows with a finished run's final solution")
    predict.add_argument("run_id")
    predict.add_argument("--input", required=True, help="CSV of the rows to predict (the training columns, no target)")
    predict.add_argument("--output", required=True, help="where the predictions go (the run's submission format)")
    predict.add_argument("--drop-extra-columns", action="store_true",
                         help="drop columns the training data does not have instead of refusing the file")
    predict.add_argument("--refit", action="store_true",
                         help="refit the solution on the full training data even when the run kept its fitted model")
    predict.set_defaults(fn=cmd_predict)

    explain = sub.add_parser("explain", help="what drives a finished run's model: permutation importance and "
                                             "partial dependence on its locked hold-out rows")
    explain.add_argument("run_id")
    explain.add_argument("--top", type=int, default=15, help="features to list (default 15)")
    explain.set_defaults(fn=cmd_explain)

    runs = sub.add_parser("runs", help="list runs")
    runs.set_defaults(fn=cmd_runs)

    decide = sub.add_parser("decide", help="approve, edit or reject a waiting refinement plan")
    decide.add_argument("decision_id", type=int)
    decide.add_argument("action", choices=["approve", "reject", "edit"])
    decide.add_argument("--plan", default=None, help="the edited plan text (with edit)")
    decide.set_defaults(fn=cmd_decide)

    grade = sub.add_parser("grade", help="grade a run of an MLE-bench competition folder on its private answers "
                                         "and place it on the leaderboard (medal thresholds)")
    grade.add_argument("run_id")
    grade.add_argument("--submission", default=None,
                       help="grade this CSV instead of the run's submission.csv (the run's saved grade is kept)")
    grade.set_defaults(fn=cmd_grade)

    args = parser.parse_args(argv)
    return int(args.fn(args))
