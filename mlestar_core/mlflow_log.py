"""An MLflow run per MLE-STAR run, when `MLFLOW_TRACKING_URI` is set (docs/handoff-mlflow.md).

Off by default: without the variable nothing here touches MLflow, and `mlflow` itself (slow to import) is imported
only inside `log_run`. The client is `mlflow.tracking.MlflowClient` with an explicit tracking URI, never the fluent
API's active run: the app drives several runs in threads of one process, and a process-wide "active run" would mix
them up.

What is logged is read back from the run store, so logging is a pure function of the store: logging again (after a
resume, or `python -m mlestar_core mlflow-log RUN_ID`) finds the MLflow run by its `mlestar.run_id` tag and adds only
what is missing. Logging never fails the MLE-STAR run: any error becomes an `mlflow_failed` event.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .hardening import scrub
from .store import Store

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
RUN_ID_TAG = "mlestar.run_id"
SOURCE = "MLE-STAR Studio"
# A TCP connect to an http(s) tracking server before any MLflow call: MLflow's own client retries an unreachable
# server for minutes (7 retries with backoff by default), which would keep a finished run's thread busy for nothing.
PROBE_TIMEOUT = 5.0

# MLflow run status per MLE-STAR status; a run not in this table (running, paused) stays RUNNING in MLflow.
_TERMINAL = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
# Param values longer than MLflow's limit are refused by some servers instead of truncated: cut them ourselves.
_PARAM_LIMIT_FALLBACK = 6000
_BATCH_METRICS = 1000
_BATCH_PARAMS_TAGS = 100
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_NAME_CHARS = re.compile(r"[^\w.\- /]")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass
class MlflowLogResult:
    """What `log_run` did. `ok` False: nothing raised, the reason is in `error` (and an `mlflow_failed` event)."""

    ok: bool
    tracking_uri: str  # with any password or token removed: safe to show and store
    experiment_id: str | None = None
    experiment_name: str | None = None
    mlflow_run_id: str | None = None
    created: bool = False  # False: an earlier MLflow run of this MLE-STAR run was updated
    url: str | None = None  # the run in the MLflow UI, for an http(s) tracking server
    metrics: int = 0  # metric points written by this call (points already there are skipped)
    params: int = 0
    artifacts: list[str] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        if not self.ok:
            return f"MLflow logging failed ({self.tracking_uri}): {self.error}"
        verb = "logged to" if self.created else "updated"
        where = self.url or self.tracking_uri
        return (f"{verb} MLflow run {self.mlflow_run_id} in experiment {self.experiment_name!r} ({where}): "
                f"{self.params} params, {self.metrics} new metric points, {len(self.artifacts)} artifacts")


def configured_uri(tracking_uri: str | None = None) -> str | None:
    """The tracking URI to log to: the argument, else MLFLOW_TRACKING_URI; None when neither is set (off)."""
    uri = tracking_uri if tracking_uri is not None else os.environ.get(TRACKING_URI_ENV, "")
    return uri.strip() or None


def safe_uri(uri: str) -> str:
    """`uri` for showing and storing: user info (user:password@) and query values (tokens) masked."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return scrub(re.sub(r"//[^/@\s]*@", "//***@", uri))
    if "@" not in parts.netloc and not parts.query:
        return scrub(uri)  # nothing to mask; rebuilding would also drop the empty host of sqlite:////abs/path
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def run_url(uri: str, experiment_id: str, mlflow_run_id: str) -> str | None:
    """The MLflow UI page of a run, for an http(s) tracking server (None for a local store: no server to link)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.netloc.rsplit("@", 1)[-1]  # never put credentials into a link
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{experiment_id}/runs/{mlflow_run_id}"


def is_local_store(uri: str) -> bool:
    """A file-based tracking store: a file: URI or a plain path."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\... on Windows


def logged(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The payload of the run's latest `mlflow_logged` event (the MLflow run the UI shows), or None."""
    last = None
    for e in events:
        if e.get("kind") == "mlflow_logged":
            last = e.get("payload") or {}
    return last


def log_run(store: Store, run_id: str, tracking_uri: str | None = None, *,
            experiment_name: str | None = None) -> MlflowLogResult | None:
    """Log (or update) the MLflow run of MLE-STAR run `run_id`. None when no tracking URI is set. Never raises: a
    failure is returned (`ok` False) and recorded as an `mlflow_failed` event."""
    uri = configured_uri(tracking_uri)
    if uri is None:
        return None
    shown = safe_uri(uri)
    with _lock_for(run_id):  # two loggings of one run at once would both create an MLflow run
        try:
            result = _log(store, run_id, uri, experiment_name)
        except Exception as exc:  # any failure of MLflow's (server, URI, permissions) must not fail the run
            error = _error_text(exc, uri)
            store.emit(run_id, "mlflow_failed", {"tracking_uri": shown, "error": error})
            return MlflowLogResult(ok=False, tracking_uri=shown, error=error)
    store.emit(run_id, "mlflow_logged", {
        "tracking_uri": shown, "experiment_id": result.experiment_id, "experiment_name": result.experiment_name,
        "mlflow_run_id": result.mlflow_run_id, "url": result.url}, key=f"mlflow_logged#{result.mlflow_run_id}")
    return result


def _lock_for(run_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(run_id, threading.Lock())


def _error_text(exc: BaseException, uri: str) -> str:
    text = f"{type(exc).__name__}: {exc}".replace(uri, safe_uri(uri))
    text = re.sub(r"//[^/@\s]*@", "//***@", text)  # credentials quoted in another form of the URI
    if isinstance(exc, ImportError) and "mlflow" in text.lower():
        text += " (install mlflow-skinny to log runs to MLflow)"
    # One line: a server's error page (HTML) would otherwise be cut at its first line, before saying anything.
    line = " ".join(text.split()) or type(exc).__name__
    return scrub(line if len(line) <= 500 else line[:497] + "...")


def _probe(uri: str) -> None:
    """Fail fast on an http(s) tracking server nobody answers on (see PROBE_TIMEOUT)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the MLflow tracking server at {safe_uri(uri)}: {exc}") from None


def _check_database_backend(uri: str) -> None:
    """A database URI needs sqlalchemy, which mlflow-skinny lacks; MLflow's own error would talk about its model
    registry instead, so say what to use."""
    if urlsplit(uri).scheme.split("+")[0] not in _DATABASE_SCHEMES:
        return
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise RuntimeError("database tracking URIs (sqlite:///, postgresql://, mysql://, mssql://) need the full "
                           "`mlflow` package (with sqlalchemy); with mlflow-skinny log to a file store "
                           "(file:///path/to/mlruns) or an MLflow server (http://host:5000)") from None


def _log(store: Store, run_id: str, uri: str, experiment_name: str | None) -> MlflowLogResult:
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in {store.root}")
    _probe(uri)
    _check_database_backend(uri)
    if is_local_store(uri):
        # MLflow 3 refuses file stores unless opted in; the database stores need sqlalchemy, which mlflow-skinny
        # does not bring, so a file store is what a user without a server has. An explicit "false" is respected.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    task = json.loads(run["task_json"])
    name = experiment_name or os.environ.get(EXPERIMENT_ENV, "").strip() or f"mlestar/{task.get('name') or 'task'}"
    experiment_id = _experiment(client, name)

    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
                               max_results=1, order_by=["attributes.start_time ASC"])
    created = not found
    if found:
        mlflow_run = found[0]
    else:
        mlflow_run = client.create_run(experiment_id, start_time=int(run["created"] * 1000),
                                       tags={RUN_ID_TAG: run_id}, run_name=f"{run['name']} ({run_id})")
    mid = mlflow_run.info.run_id

    limit = _param_limit()
    params = run_params(run, limit)
    old = dict(mlflow_run.data.params) if found else {}
    # A param cannot change once logged (MLflow refuses it): a value changed since (constraints pinned later) is
    # kept as a tag, and config.json holds the config as it is now.
    changed = sorted(k for k, v in params.items() if k in old and old[k] != v)
    new_params = [Param(k, v) for k, v in params.items() if k not in old]
    tags = [RunTag(k, v) for k, v in run_tags(run, task).items()]
    if changed:
        tags.append(RunTag("mlestar.config_changed", ", ".join(changed)[:limit]))
    for chunk in _chunks(new_params, _BATCH_PARAMS_TAGS):
        client.log_batch(mid, params=chunk)
    for chunk in _chunks(tags, _BATCH_PARAMS_TAGS):
        client.log_batch(mid, tags=chunk)

    points = run_metrics(store, run_id)
    if not created:  # logging again adds only the points that are not there yet
        have: dict[str, set[tuple[int, int, float]]] = {}
        for key in {p[0] for p in points}:
            have[key] = {(m.step, m.timestamp, m.value) for m in client.get_metric_history(mid, key)}
        points = [p for p in points if (p[3], p[2], p[1]) not in have[p[0]]]
    metrics = [Metric(key, value, ts, step) for key, value, ts, step in points]
    for chunk in _chunks(metrics, _BATCH_METRICS):
        client.log_batch(mid, metrics=chunk)

    artifacts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlestar-mlflow-") as tmp:
        for path in artifact_files(store, run, Path(tmp)):
            client.log_artifact(mid, str(path))
            artifacts.append(path.name)

    status = _TERMINAL.get(run["status"])
    if status is not None:
        end = run.get("finished") or run.get("updated") or time.time()
        client.set_terminated(mid, status=status, end_time=int(float(end) * 1000))
    return MlflowLogResult(ok=True, tracking_uri=safe_uri(uri), experiment_id=experiment_id, experiment_name=name,
                           mlflow_run_id=mid, created=created, url=run_url(uri, experiment_id, mid),
                           metrics=len(metrics), params=len(new_params), artifacts=artifacts)


def _experiment(client: Any, name: str) -> str:
    """The id of experiment `name`, created (or restored from MLflow's trash) when needed."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return str(client.create_experiment(name, tags={"mlestar.source": SOURCE}))
        except MlflowException:  # another thread or process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return str(exp.experiment_id)


def _param_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return _PARAM_LIMIT_FALLBACK
    return int(MAX_PARAM_VAL_LENGTH)


def _chunks(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def _key(name: str) -> str:
    """A param or metric name MLflow accepts (letters, digits, _ - . space /; at most 250 characters)."""
    return _NAME_CHARS.sub("_", name)[:250]


def _value(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as flat MLflow params: nested dicts joined with ".", lists (and empty dicts) as JSON."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[_key(key)] = _value(v)
    return out


def run_params(run: dict[str, Any], limit: int = _PARAM_LIMIT_FALLBACK) -> dict[str, str]:
    """The run config, flattened, plus the task's and the evaluation protocol's facts (`task.*`, `protocol.*`)."""
    task = json.loads(run["task_json"])
    params = flatten(json.loads(run["config_json"]))
    columns = task.get("columns") or []
    facts: dict[str, Any] = {
        "task.name": task.get("name"), "task.type": task.get("task_type"), "task.target": task.get("target"),
        "task.metric": task.get("metric"), "task.higher_is_better": task.get("higher_is_better"),
        "task.rows": task.get("n_train_rows"), "task.test_rows": task.get("n_test_rows"),
        # as Task.n_features counts them: the columns a model learns from
        "task.features": sum(1 for c in columns if c.get("kind") != "id" and c.get("name") != task.get("id_column")),
    }
    protocol = json.loads(run["protocol_json"]) if run.get("protocol_json") else {}
    for k in ("n_folds", "n_repeats", "n_rows", "reason"):
        if k in protocol:
            facts[f"protocol.{k}"] = protocol[k]
    params.update({k: _value(v) for k, v in facts.items()})
    return {k: v if len(v) <= limit else v[:limit - 3] + "..." for k, v in params.items()}


def run_tags(run: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
    hib = task.get("higher_is_better")
    tags = {
        RUN_ID_TAG: run["id"], "mlestar.name": run["name"], "mlestar.brain": run["brain"],
        "mlestar.task": str(task.get("name") or ""), "mlestar.metric": str(task.get("metric") or ""),
        "mlestar.direction": "maximize" if hib else "minimize", "mlestar.status": run["status"],
        "mlestar.source": SOURCE, "mlflow.source.name": SOURCE,
    }
    if run.get("owner"):
        tags["mlflow.user"] = str(run["owner"])
    if run.get("error"):
        tags["mlestar.error"] = str(run["error"])[:5000]
    if run["status"] == "finished":
        tags["mlflow.note.content"] = (
            f"MLE-STAR run `{run['id']}` on {task.get('name')} ({task.get('metric')}, "
            f"{'higher' if hib else 'lower'} is better): validation {run.get('best_score')}, locked hold-out "
            f"{run.get('holdout_score')}, trivial baseline {run.get('baseline_score')}. See report.md.")
    return tags


def _ms(ts: Any) -> int:
    return int(float(ts) * 1000)


def run_metrics(store: Store, run_id: str) -> list[tuple[str, float, int, int]]:
    """Every metric point of the run as (key, value, timestamp ms, step), in the store's numbers and times."""
    run = store.get_run(run_id) or {}
    events = store.events_after(run_id)
    ts_of: dict[tuple[str, Any], float] = {}
    for e in events:
        p = e["payload"]
        if e["kind"] in ("ablation_result", "ensemble_round") and p.get("id") is not None:
            ts_of.setdefault((e["kind"], p["id"]), e["ts"])
    # The run's own numbers are stamped with its `run_finished` event, written once: logging the same run again
    # then finds the same points instead of adding copies with a newer time.
    finished = [e["ts"] for e in events if e["kind"] == "run_finished"]
    end = finished[0] if finished else run.get("finished") or run.get("updated") or time.time()
    points: list[tuple[str, float, int, int]] = []

    def add(key: str, value: Any, ts: Any, step: int) -> None:
        if value is not None:
            points.append((_key(key), float(value), _ms(ts), int(step)))

    # The best validation score so far: the store announces each improvement once (`best_score` events).
    for i, e in enumerate(e for e in events if e["kind"] == "best_score"):
        add("best_validation_score", e["payload"].get("score"), e["ts"], i)

    # Each script's engine score (search runs), per phase and over the whole run, in the order they ran.
    phase_of = {s["key"]: s["phase"] for s in store.steps(run_id)}
    scripts = {s["id"]: s for s in store.table("scripts", run_id)}
    per_phase: dict[str, int] = {}
    search = [x for x in store.table("executions", run_id) if x["purpose"] == "search"]
    n = 0
    for x in search:
        if x["score"] is None:
            continue
        script = scripts.get(x["script_id"]) or {}
        phase = phase_of.get(script.get("step_key") or "", script.get("role") or "other")
        add(f"script_score/{phase}", x["score"], x["created"], per_phase.setdefault(phase, 0))
        per_phase[phase] += 1
        add("script_score/all", x["score"], x["created"], n)
        n += 1

    # Ablation: how much each block helps, per track, one point per outer step.
    for a in store.table("ablations", run_id):
        ts = ts_of.get(("ablation_result", a["id"]), end)
        add(f"ablation_delta/track{a['track'] + 1}/{a['block']}", a["delta"], ts, a["outer_step"])

    # Refinement attempts per track; the step is the attempt's number in the track (failed ones count).
    by_track: dict[int, list[dict[str, Any]]] = {}
    for at in sorted(store.table("attempts", run_id), key=lambda r: (r["outer_step"], r["inner_step"], r["id"])):
        by_track.setdefault(at["track"], []).append(at)
    for t, rows in by_track.items():
        for i, at in enumerate(rows):
            add(f"attempt_score/track{t + 1}", at["score"], at["created"], i)

    for r in store.table("ensemble_rounds", run_id):
        add("ensemble_round_score", r["score"], ts_of.get(("ensemble_round", r["id"]), end), r["round"])

    # The brain's spend, cumulative over its calls (the last point is the run's total).
    calls = store.table("brain_calls", run_id)
    cost = tokens_in = tokens_out = 0.0
    for i, c in enumerate(calls):
        cost += float(c["cost"] or 0.0)
        tokens_in += float(c["tokens_in"] or 0)
        tokens_out += float(c["tokens_out"] or 0)
        add("brain_cost_usd", cost, c["created"], i)
        add("brain_tokens_in", tokens_in, c["created"], i)
        add("brain_tokens_out", tokens_out, c["created"], i)
    if not calls:
        for key in ("brain_cost_usd", "brain_tokens_in", "brain_tokens_out"):
            add(key, 0.0, end, 0)

    # The run's numbers as the report gives them.
    add("validation_score", run.get("best_score"), end, 0)
    add("holdout_score", run.get("holdout_score"), end, 0)
    add("baseline_score", run.get("baseline_score"), end, 0)
    add("agent_time_s", run.get("time_used"), end, 0)
    add("waiting_time_s", run.get("time_waiting"), end, 0)
    add("scripts_run", len(search), end, 0)
    add("scripts_failed", sum(1 for x in search if x["exit_code"] != 0), end, 0)
    add("brain_calls", len(calls), end, 0)
    return points


def artifact_files(store: Store, run: dict[str, Any], tmp: Path) -> list[Path]:
    """The files to upload: the final solution, report, submission, the run config (written to `tmp`) and, when the
    run has them, its explanation and competition grading."""
    from .competition import COMPETITION_FILE
    from .explain import RESULT_FILE, explain_dir
    from .exports import output_dir

    run_dir, out_dir = store.run_dir(run["id"]), output_dir(store, run)
    files = [out_dir / name for name in ("solution.py", "report.md", "submission.csv")]
    files += [explain_dir(run_dir) / RESULT_FILE, run_dir / COMPETITION_FILE]  # where explain.py / competition.py save
    found: dict[str, Path] = {}
    for f in files:
        if f.is_file():
            found.setdefault(f.name, f)  # artifacts are named by file name: the first place wins
    config = tmp / "config.json"
    config.write_text(json.dumps(json.loads(run["config_json"]), indent=2, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    return [*found.values(), config]
