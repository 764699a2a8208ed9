"""An MLflow run per MLE-STAR run (mlestar_core/mlflow_log.py), read back from a local file-based tracking store.

One real run (one candidate, one outer step with its ablation and one attempt) is made by the pipeline with
MLFLOW_TRACKING_URI set, so the MLflow run is the one the pipeline logged by itself; the other tests log it again, or
a copy of it, to other stores. mlflow-skinny has no sqlalchemy, so a sqlite tracking store is only checked to fail
with a clear message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_TASKS, ROOT, RunBuilder

from mlestar_core import mlflow_log
from mlestar_core.config import RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.store import Store
from mlestar_core.task import load_task
from mlestar_core.views.common import describe_event

pytest.importorskip("mlflow")

# Small, but with an ablation and a refinement attempt; the ensemble series is checked on a hand-made run (an
# ensemble script's final runs would cost this file several seconds).
CONFIG = dict(num_models=1, outer_steps=1, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
              script_timeout=120, n_folds=2)


@dataclass(frozen=True)
class Logged:
    store: Store
    run_id: str
    root: Path  # holds store/, out/ and mlruns/
    uri: str


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, run_id: str) -> list[Any]:
    client = _client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`mlestar.run_id` = '{run_id}'")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    root = tmp_path_factory.mktemp("mlflow_run")
    uri = f"file://{root}/mlruns"
    store = Store(root / "store")
    # log_run opts in to MLflow's file store when the user did not say otherwise: leave the session as it was
    allow = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        run_id = create_run(store, load_task(DEMO_TASKS / "breast-cancer"), RunConfig(**CONFIG),
                            out_dir=root / "out")
        Pipeline(store, run_id).run()
    _restore_env("MLFLOW_ALLOW_FILE_STORE", allow)
    yield Logged(store, run_id, root, uri)


@pytest.fixture
def file_store_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def test_the_pipeline_logs_its_finished_run_by_itself(logged: Logged, file_store_allowed: None) -> None:
    run = logged.store.get_run(logged.run_id)
    assert run is not None and run["status"] == "finished"
    assert not logged.store.events_of_kind(logged.run_id, "mlflow_failed")
    [event] = logged.store.events_of_kind(logged.run_id, "mlflow_logged")
    [mrun] = _runs(logged.uri, logged.run_id)
    assert event["payload"]["mlflow_run_id"] == mrun.info.run_id
    assert event["payload"]["experiment_id"] == mrun.info.experiment_id
    assert event["payload"]["tracking_uri"] == logged.uri
    assert event["payload"]["url"] is None  # a local store has no UI to link to
    assert mrun.info.status == "FINISHED"
    assert mrun.info.start_time == int(run["created"] * 1000)
    assert _client(logged.uri).get_experiment(mrun.info.experiment_id).name == "mlestar/breast-cancer"
    assert mrun.data.tags["mlestar.run_id"] == logged.run_id
    assert mrun.data.tags["mlflow.runName"] == f"{run['name']} ({logged.run_id})"
    expected = {"mlestar.brain": "offline", "mlestar.task": "breast-cancer", "mlestar.metric": "roc_auc",
                "mlestar.direction": "maximize", "mlestar.status": "finished", "mlestar.source": "MLE-STAR Studio"}
    assert expected.items() <= mrun.data.tags.items()
    assert "Logged to MLflow: run " + mrun.info.run_id in describe_event("mlflow_logged", event["payload"])


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else str(v)
    return out


def test_params_are_the_run_config_and_the_task_facts(logged: Logged, file_store_allowed: None) -> None:
    run = logged.store.get_run(logged.run_id)
    assert run is not None
    [mrun] = _runs(logged.uri, logged.run_id)
    params = mrun.data.params
    config = _flat(json.loads(run["config_json"]))
    assert {k: v for k, v in params.items() if not k.startswith(("task.", "protocol."))} == config
    assert params["num_models"] == "1" and params["n_folds"] == "2" and params["llm.search"] == "True"
    task = load_task(DEMO_TASKS / "breast-cancer")
    assert params["task.rows"] == str(task.n_train_rows)
    assert params["task.features"] == str(task.n_features) == "30"
    assert params["task.metric"] == "roc_auc"
    assert params["protocol.n_folds"] == "2"


def test_metrics_are_the_stores_numbers_one_point_per_step(logged: Logged, file_store_allowed: None) -> None:
    store, rid = logged.store, logged.run_id
    run = store.get_run(rid)
    assert run is not None
    client = _client(logged.uri)
    [mrun] = _runs(logged.uri, rid)
    history = {k: client.get_metric_history(mrun.info.run_id, k) for k in mrun.data.metrics}
    for key, points in history.items():  # one point per step: logging never duplicated one
        assert len({p.step for p in points}) == len(points), key

    m = mrun.data.metrics
    assert m["validation_score"] == run["best_score"]
    assert m["holdout_score"] == run["holdout_score"]
    assert m["baseline_score"] == run["baseline_score"] == 0.5
    assert m["agent_time_s"] == pytest.approx(run["time_used"])
    final = store.events_of_kind(rid, "final")[-1]["payload"]  # what the report states
    assert m["validation_score"] == final["validation_score"] and m["holdout_score"] == final["holdout_score"]

    best = store.events_of_kind(rid, "best_score")
    series = sorted(history["best_validation_score"], key=lambda p: p.step)
    assert [p.step for p in series] == list(range(len(best))) and len(best) >= 2
    assert [p.value for p in series] == [e["payload"]["score"] for e in best]
    assert [p.timestamp for p in series] == [int(e["ts"] * 1000) for e in best]
    assert all(a.value < b.value for a, b in zip(series, series[1:], strict=False))  # roc_auc: higher is better
    assert series[-1].value == run["best_score"]

    search = [x for x in store.table("executions", rid) if x["purpose"] == "search" and x["score"] is not None]
    every = sorted(history["script_score/all"], key=lambda p: p.step)
    assert [p.value for p in every] == [x["score"] for x in search]
    assert [p.timestamp for p in every] == [int(x["created"] * 1000) for x in search]
    assert [p.value for p in history["script_score/baseline"]] == [0.5]
    assert sum(len(v) for k, v in history.items() if k.startswith("script_score/") and k != "script_score/all") \
        == len(search)

    ablations = store.table("ablations", rid)
    assert ablations
    for a in ablations:
        [p] = history[f"ablation_delta/track1/{a['block']}"]
        assert (p.step, p.value) == (a["outer_step"], a["delta"])
    scored = [a for a in store.table("attempts", rid) if a["score"] is not None]
    assert [p.value for p in history.get("attempt_score/track1", [])] == [a["score"] for a in scored]
    calls = store.table("brain_calls", rid)
    assert len(history["brain_cost_usd"]) == len(calls) and m["brain_calls"] == len(calls)
    assert m["brain_cost_usd"] == 0.0  # the offline brain costs nothing


def test_artifacts_are_the_runs_files_byte_for_byte(logged: Logged, file_store_allowed: None,
                                                    tmp_path: Path) -> None:
    run = logged.store.get_run(logged.run_id)
    assert run is not None
    client = _client(logged.uri)
    [mrun] = _runs(logged.uri, logged.run_id)
    names = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert names == {"solution.py", "report.md", "submission.csv", "explain.json", "config.json"}
    out = logged.root / "out"
    originals = {n: out / n for n in ("solution.py", "report.md", "submission.csv")}
    originals["explain.json"] = logged.store.run_dir(logged.run_id) / "explain" / "explain.json"
    for name, original in originals.items():
        got = Path(client.download_artifacts(mrun.info.run_id, name, str(tmp_path)))
        assert got.read_bytes() == original.read_bytes(), name
    got = Path(client.download_artifacts(mrun.info.run_id, "config.json", str(tmp_path)))
    assert json.loads(got.read_text(encoding="utf-8")) == json.loads(run["config_json"])


def test_logging_again_updates_the_same_mlflow_run(logged: Logged, file_store_allowed: None) -> None:
    client = _client(logged.uri)
    [before] = _runs(logged.uri, logged.run_id)
    lengths = {k: len(client.get_metric_history(before.info.run_id, k)) for k in before.data.metrics}
    result = mlflow_log.log_run(logged.store, logged.run_id)  # MLFLOW_TRACKING_URI is unset here
    assert result is None
    result = mlflow_log.log_run(logged.store, logged.run_id, logged.uri)
    assert result is not None and result.ok, result
    assert not result.created and result.mlflow_run_id == before.info.run_id
    assert result.metrics == 0 and result.params == 0  # everything was there already
    [after] = _runs(logged.uri, logged.run_id)
    assert {k: len(client.get_metric_history(after.info.run_id, k)) for k in after.data.metrics} == lengths
    assert len(logged.store.events_of_kind(logged.run_id, "mlflow_logged")) == 1  # keyed: once per MLflow run

    # The CLI does the same (and says where it went).
    from mlestar_core.cli import main

    assert main(["--store", str(logged.store.root), "mlflow-log", logged.run_id, "--tracking-uri", logged.uri]) == 0
    assert len(_runs(logged.uri, logged.run_id)) == 1


def test_a_resumed_run_updates_its_mlflow_run(logged: Logged, file_store_allowed: None, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the run: resuming it (the pipeline replays its stored steps) must not touch the module's run.
    shutil.copytree(logged.store.root, tmp_path / "store")
    store = Store(tmp_path / "store")
    uri = f"file://{tmp_path}/mlruns"
    first = mlflow_log.log_run(store, logged.run_id, uri)
    assert first is not None and first.ok and first.created
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    Pipeline(store, logged.run_id).run()
    [mrun] = _runs(uri, logged.run_id)
    assert mrun.info.run_id == first.mlflow_run_id and mrun.info.status == "FINISHED"
    assert not store.events_of_kind(logged.run_id, "mlflow_failed")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_an_event_not_a_failed_run(logged: Logged, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(logged.store.root, tmp_path / "store")
    store = Store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:hunter2-secret@127.0.0.1:{_closed_port()}/mlflow")
    start = time.monotonic()
    summary = Pipeline(store, logged.run_id).run()
    assert time.monotonic() - start < 15
    assert summary["validation_score"] is not None
    run = store.get_run(logged.run_id)
    assert run is not None and run["status"] == "finished"
    [failed] = store.events_of_kind(logged.run_id, "mlflow_failed")
    assert "cannot reach the MLflow tracking server" in failed["payload"]["error"]
    assert "hunter2" not in json.dumps(failed["payload"])
    assert failed["payload"]["tracking_uri"].startswith("http://***@127.0.0.1:")
    assert "the run is not affected" in describe_event("mlflow_failed", failed["payload"])

    # A URI MLflow cannot use at all fails the same way, at once.
    result = mlflow_log.log_run(store, logged.run_id, "nosuchscheme://somewhere")
    assert result is not None and not result.ok and result.error
    assert len(store.events_of_kind(logged.run_id, "mlflow_failed")) == 2


def test_a_sqlite_uri_needs_the_full_mlflow_package(logged: Logged, tmp_path: Path) -> None:
    # mlflow-skinny has no sqlalchemy: database stores are out of reach, and the message says what to do instead.
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sqlalchemy is installed: a sqlite tracking store would work")
    shutil.copytree(logged.store.root, tmp_path / "store")
    store = Store(tmp_path / "store")
    result = mlflow_log.log_run(store, logged.run_id, f"sqlite:///{tmp_path}/mlflow.db")
    assert result is not None and not result.ok
    assert "full `mlflow` package" in (result.error or "")


def test_series_of_a_hand_made_run(run_builder: RunBuilder) -> None:
    store = run_builder.store
    rid = run_builder.run("finished", higher_is_better=False)
    for score in (0.5, 0.4, 0.31):
        run_builder.event(rid, "best_score", score=score)
    store.add_ensemble_round(rid, 0, "mean of both", None, 0.33, strategy="mean")
    store.add_ensemble_round(rid, 1, "greedy", None, 0.31, strategy="caruana")
    store.add_ensemble_round(rid, 2, "stacking", None, None, strategy="stacking")  # failed: no point
    store.update_run(rid, best_score=0.31)
    run_builder.event(rid, "run_finished")
    [finished] = store.events_of_kind(rid, "run_finished")
    points = mlflow_log.run_metrics(store, rid)
    series = {k: [(step, v) for key, v, _, step in points if key == k] for k in {p[0] for p in points}}
    assert series["best_validation_score"] == [(0, 0.5), (1, 0.4), (2, 0.31)]  # log_loss: lower is better
    assert series["ensemble_round_score"] == [(0, 0.33), (1, 0.31)]
    assert series["validation_score"] == [(0, 0.31)]
    assert series["brain_cost_usd"] == [(0, 0.0)]  # no brain call yet: a zero, not a missing metric
    assert "holdout_score" not in series  # never scored: nothing is made up
    assert {ts for key, _, ts, _ in points if key == "validation_score"} == {int(finished["ts"] * 1000)}
    assert points == mlflow_log.run_metrics(store, rid)  # the same store gives the same points


def test_safe_uri_and_link_never_show_credentials() -> None:
    uri = "https://bob:pa55word@mlflow.example.com:8443/base/?token=abc&x=1"
    shown = mlflow_log.safe_uri(uri)
    assert "pa55word" not in shown and "bob" not in shown and "abc" not in shown
    assert shown.startswith("https://***@mlflow.example.com:8443/base/")
    assert mlflow_log.run_url(uri, "7", "r1") == "https://mlflow.example.com:8443/base/#/experiments/7/runs/r1"
    assert mlflow_log.run_url("file:///tmp/mlruns", "7", "r1") is None
    assert mlflow_log.safe_uri("file:///tmp/mlruns") == "file:///tmp/mlruns"
    assert mlflow_log.is_local_store("/tmp/mlruns") and not mlflow_log.is_local_store("http://h:5000")
    assert mlflow_log.configured_uri("  ") is None


def test_without_a_tracking_uri_mlflow_is_not_even_imported() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    code = ("import sys, mlestar_core.pipeline, mlestar_core.cli, mlestar_core.mlflow_log as m\n"
            "assert m.log_run(None, 'x') is None\n"
            "assert not [n for n in sys.modules if n == 'mlflow' or n.startswith('mlflow.')], 'mlflow imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_the_sidebar_says_where_runs_go_and_shows_the_mlflow_run(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from apptest_helpers import APP, texts
    from streamlit.testing.v1 import AppTest

    from studio import state

    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])  # no --demo
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    builder = RunBuilder(Store(root))
    rid = builder.run("finished")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[state.QUERY_RUN] = rid
    at.run()
    assert not at.exception, at.exception
    assert "MLflow" not in texts(at.sidebar.markdown) + texts(at.sidebar.caption)  # off: not a word about it

    uri = "http://ann:s3cret-pw@mlflow.example.com:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    builder.event(rid, "mlflow_logged", tracking_uri=mlflow_log.safe_uri(uri), experiment_id="4",
                  experiment_name="mlestar/breast-cancer", mlflow_run_id="abc123",
                  url=mlflow_log.run_url(uri, "4", "abc123"))
    at.run()
    assert not at.exception, at.exception
    shown = texts(at.sidebar.markdown) + texts(at.sidebar.caption)
    assert "**MLflow:** logging finished runs to `http://***@mlflow.example.com:5000`" in shown
    assert "[abc123](http://mlflow.example.com:5000/#/experiments/4/runs/abc123)" in shown
    assert "s3cret" not in shown
