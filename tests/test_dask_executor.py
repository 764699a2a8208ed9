"""The Dask executor on a real LocalCluster (two worker processes): same results as the local executor, the
same limits, cancellation, a worker killed mid-script, shared and shipped inputs, and a whole small run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from waiting import wait_for

from mlestar_core.config import ConfigError, RunConfig, check_config
from mlestar_core.dask_executor import (
    DaskExecutor,
    ExecutorError,
    make_executor,
    parse_spec,
)
from mlestar_core.executor import ExecResult, Job, LocalExecutor
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.store import Store
from mlestar_core.task import load_task

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("input", "tmp")  # inputs and scratch: not outputs
SCORE = 'print("Final Validation Performance: 0.75")\n'
# Reads its input, writes predictions and a model folder like a real solution, and says where it ran.
WORKING = textwrap.dedent("""
    import os, sys
    rows = open("input/train.csv").read().splitlines()
    print("cwd", os.getcwd())
    print("rows", len(rows) - 1)
    with open("oof.csv", "w") as f:
        f.write("row,pred\\n" + "".join(f"{i},{i / 10}\\n" for i in range(len(rows) - 1)))
    os.makedirs("model", exist_ok=True)
    open("model/weights.txt", "w").write("w=" + os.environ.get("TAG", "?"))
    print("Final Validation Performance:", (len(rows) - 1) / 10)
""")


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     silence_logs=50)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def ex(cluster: object) -> Iterator[DaskExecutor]:
    with DaskExecutor(cluster.scheduler_address, timeout=60, memory_mb=2048) as executor:  # type: ignore[attr-defined]
        yield executor


@pytest.fixture
def both_workers(ex: DaskExecutor) -> DaskExecutor:
    """Every test starts with the cluster whole (a killed worker comes back through its nanny)."""
    ex.client.wait_for_workers(2, timeout=60)
    return ex


def _inputs(tmp_path: Path, rows: int = 5) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "train.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(rows)))
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    """The work folder's files but the inputs and scratch; the `cwd` line the scripts print differs by design."""
    kept = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] not in SKIP]
    return {str(p.relative_to(folder)): b"".join(ln for ln in p.read_bytes().splitlines(True)
                                                 if not ln.startswith(b"cwd ")) for p in kept}


def _script_processes(worker_pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(worker_pid).children(recursive=True)
                if any("script.py" in part for part in p.cmdline())]
    except psutil.Error:
        return []


def _running_on(ex: DaskExecutor, prefix: str, timeout: float = 30) -> tuple[int, list[psutil.Process]]:
    """The pid of the worker process running our job (key starting with `prefix`) and its script processes, once
    the script has started."""
    pids: dict[str, int] = ex.client.run(os.getpid)

    def started() -> tuple[int, list[psutil.Process]] | None:
        for addr, keys in ex.client.processing().items():
            if any(str(k).startswith(prefix) for k in keys) and addr in pids:
                procs = _script_processes(pids[addr])
                if procs:
                    return pids[addr], procs
        return None

    return wait_for(started, timeout=timeout, what=f"a worker running {prefix}")


def _gone(procs: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


# -- the spec and connecting ---------------------------------------------------------------------------------------


def test_spec_parsing_and_clear_errors() -> None:
    assert parse_spec("local").kind == "local" and parse_spec("").kind == "local"
    spec = parse_spec("dask://10.0.0.5:9000?shared=1")
    assert (spec.kind, spec.address, spec.shared) == ("dask", "tcp://10.0.0.5:9000", True)
    assert parse_spec("dask://sched").address == "tcp://sched:8786"
    for bad, words in [("tcp://x:1", "dask://host:port"), ("dask://", "not a Dask scheduler address"),
                       ("dask://h:99999", "port"), ("dask://h:1?fast=1", "unknown option"),
                       ("dask://h:1?shared=maybe", "shared must be 1 or 0")]:
        with pytest.raises(ExecutorError, match=words):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="dask://host:port"):
        check_config(RunConfig(executor="cluster please"))
    assert isinstance(make_executor("local", workers=1, timeout=5, memory_mb=256), LocalExecutor)


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1.*dask scheduler"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=2)
    assert time.monotonic() - started < 20


def test_a_run_whose_scheduler_is_down_is_paused_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlestar_core import dask_executor
    from mlestar_core.service import RunManager

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"dask://127.0.0.1:{s.getsockname()[1]}"
    store = Store(tmp_path / "store")
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        RunManager(store).start(load_task(ROOT / "demo_tasks" / "breast-cancer"), RunConfig(executor=dead))
    (run,) = store.list_runs()
    assert run["status"] == "paused" and "scripts cannot run: cannot reach" in run["pause_reason"]


def test_workers_that_cannot_import_mlestar_core_are_refused(tmp_path: Path) -> None:
    from distributed import LocalCluster

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with LocalCluster(n_workers=0, dashboard_address=None, silence_logs=50) as bare:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", bare.scheduler_address,
                                   "--nthreads", "1", "--no-dashboard"], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with pytest.raises(ExecutorError, match="cannot import mlestar_core.*PYTHONPATH"):
                DaskExecutor(bare.scheduler_address, connect_timeout=5)
        finally:
            worker.terminate()
            worker.wait(30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_scheduler_that_cannot_import_mlestar_core_is_refused(tmp_path: Path) -> None:
    """`dask scheduler` started without PYTHONPATH, as a real process: it cannot unpickle our task graphs, so every
    script would be lost. The executor says so when it connects (a LocalCluster's scheduler lives in this process
    and imports everything, so it cannot show this)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    port = _free_port()
    scheduler = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "scheduler", "--port", str(port),
                                  "--dashboard-address", ":0"], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _port_open(port), timeout=60, what="the scheduler to listen")
        with pytest.raises(ExecutorError, match="scheduler .* cannot load this project's tasks.*PYTHONPATH"):
            DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=10)
    finally:
        scheduler.terminate()
        scheduler.wait(30)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_worker_without_the_sandbox_is_said_plainly(tmp_path: Path) -> None:
    from distributed import LocalCluster

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLESTAR_SANDBOX": "none"}  # a worker host without bubblewrap
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, silence_logs=50) as mixed:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", mixed.scheduler_address,
                                   "--nthreads", "1", "--no-dashboard", "--name", "bare"], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(mixed.scheduler_address, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)  # the executor probes the workers there when it connects
            with DaskExecutor(mixed.scheduler_address, connect_timeout=5) as ex:
                pass
        finally:
            worker.terminate()
            worker.wait(30)
    assert not ex.sandboxed and ex.isolation.mode == "none" and ex.workers == 2
    assert "1 of 2 workers run scripts WITHOUT the sandbox" in ex.isolation.message
    assert "SANDBOX OFF" in ex.isolation.message


# -- jobs on the cluster -------------------------------------------------------------------------------------------


def test_results_and_outputs_equal_the_local_executors(both_workers: DaskExecutor, tmp_path: Path) -> None:
    ex = both_workers
    inputs = _inputs(tmp_path)
    failing = "import sys\nprint('half way')\nsys.exit(3)\n"
    codes = [(WORKING, {"TAG": "a"}), (WORKING, {"TAG": "b"}), (failing, {}), ("print('no score')\n", {})]

    def jobs(side: str) -> list[Job]:
        return [Job(code, tmp_path / side / f"job{i}", inputs=inputs, env=env, label=f"eq {i}")
                for i, (code, env) in enumerate(codes)]

    local = LocalExecutor(workers=2, timeout=60, memory_mb=2048).run_many(jobs("local"))
    remote = ex.run_many(jobs("dask"))
    assert [r.ok for r in remote] == [True, True, False, False]
    for lo, re_ in zip(local, remote, strict=True):
        assert (re_.exit_code, re_.score, re_.killed_reason, re_.sandbox) == \
               (lo.exit_code, lo.score, lo.killed_reason, lo.sandbox)
        assert [ln for ln in re_.stdout.splitlines() if not ln.startswith("cwd")] == \
               [ln for ln in lo.stdout.splitlines() if not ln.startswith("cwd")]
        assert re_.reason() == lo.reason()
    for i in range(len(codes)):
        assert _files(tmp_path / "dask" / f"job{i}") == _files(tmp_path / "local" / f"job{i}")
    assert (tmp_path / "dask" / "job1" / "model" / "weights.txt").read_text() == "w=b"
    # Shipped, not shared: the script ran in the worker's own folder, and the inputs reached it.
    cwd = next(ln for ln in remote[0].stdout.splitlines() if ln.startswith("cwd")).split(" ", 1)[1]
    assert Path(cwd) != (tmp_path / "dask" / "job0").resolve() and "rows 5" in remote[0].stdout
    assert not (tmp_path / "dask" / "job0" / "input").exists()


def test_changed_inputs_are_shipped_again(both_workers: DaskExecutor, tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, rows=3)
    first = both_workers.run(Job(WORKING, tmp_path / "one", inputs=inputs))
    (inputs / "train.csv").write_text("x,y\n" + "".join(f"{i},1\n" for i in range(8)))
    second = both_workers.run(Job(WORKING, tmp_path / "two", inputs=inputs))
    assert (first.score, second.score) == (0.3, 0.8)


def test_shared_storage_uses_the_jobs_own_folders(cluster: object, tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    with DaskExecutor(cluster.scheduler_address, shared=True, timeout=60) as shared:  # type: ignore[attr-defined]
        shared.client.wait_for_workers(2, timeout=60)
        res = shared.run(Job(WORKING, tmp_path / "job", inputs=inputs))
    assert res.ok, res.error_text()
    assert f"cwd {(tmp_path / 'job').resolve()}" in res.stdout
    assert (tmp_path / "job" / "oof.csv").is_file() and (tmp_path / "job" / "model" / "weights.txt").is_file()


def test_limits_and_early_stop_hold_on_the_workers(cluster: object, tmp_path: Path) -> None:
    hungry = "blob = bytearray(3 * 256 * 2**20)\n" + SCORE
    slow = "import time\ntime.sleep(30)\n" + SCORE
    chatty = "import time\nfor i in range(30):\n    print('step', i, flush=True)\n    time.sleep(0.2)\n" + SCORE
    with DaskExecutor(cluster.scheduler_address, timeout=60, memory_mb=256) as small:  # type: ignore[attr-defined]
        small.client.wait_for_workers(2, timeout=60)
        started = time.monotonic()
        mem, slow_res = small.run_many([Job(hungry, tmp_path / "mem"), Job(slow, tmp_path / "slow", timeout=3)])
        # The stop check travels to the worker (cloudpickle) and stops the script there.
        stopped = small.run(Job(chatty, tmp_path / "chatty",
                                stop_check=lambda out: "no progress" if "step 3" in out else None))
    assert mem.killed_reason == "memory" and mem.memory_exceeded and "Memory cap of 256 MB" in mem.reason()
    assert slow_res.killed_reason == "timeout" and slow_res.timed_out
    assert stopped.killed_reason == "early_stop" and stopped.early_stop == "no progress"
    assert "step 29" not in stopped.stdout
    assert time.monotonic() - started < 30


def test_cancel_all_kills_the_script_on_its_worker(both_workers: DaskExecutor, tmp_path: Path) -> None:
    ex = both_workers
    out: list[ExecResult] = []
    runner = threading.Thread(target=lambda: out.extend(ex.run_many(
        [Job("import time\ntime.sleep(60)\n" + SCORE, tmp_path / "long", label="cancel me")])))
    runner.start()
    _, procs = _running_on(ex, "mlestar-cancel-me")
    started = time.monotonic()
    ex.cancel_all()
    runner.join(15)
    assert not runner.is_alive() and out[0].killed_reason == "cancelled" and not out[0].ok
    wait_for(lambda: _gone(procs), timeout=10, what="the cancelled script to die")
    assert time.monotonic() - started < 15
    # The executor stays usable after a cancel, like the local one.
    assert ex.run(Job(SCORE, tmp_path / "after")).ok


@pytest.mark.parametrize("shared", [False, True], ids=["shipped", "shared"])
def test_a_worker_killed_mid_script_gets_its_script_rescheduled(both_workers: DaskExecutor, cluster: object,
                                                                tmp_path: Path, shared: bool) -> None:
    inputs = _inputs(tmp_path)
    # Each attempt leaves a line before it sleeps: the rerun must start from a clean folder, so one line is left.
    code = "open('attempts.txt', 'a').write('attempt\\n')\nimport time\ntime.sleep(3)\n" + WORKING
    out: list[ExecResult] = []
    with DaskExecutor(cluster.scheduler_address, shared=shared, timeout=60) as ex:  # type: ignore[attr-defined]
        runner = threading.Thread(target=lambda: out.extend(ex.run_many(
            [Job(code, tmp_path / "survivor", inputs=inputs, label="kill my worker")])))
        runner.start()
        worker_pid, procs = _running_on(ex, "mlestar-kill-my-worker")
        wait_for(lambda: shared is False or (tmp_path / "survivor" / "attempts.txt").is_file(), timeout=20,
                 what="the first attempt to write its line")
        os.kill(worker_pid, signal.SIGKILL)
        # The sandboxed script tree dies with its worker (bwrap --die-with-parent), not at its timeout.
        wait_for(lambda: _gone(procs), timeout=10, what="the dead worker's script to die")
        runner.join(90)
    assert not runner.is_alive()
    res = out[0]
    assert res.ok, res.error_text()
    assert res.score == 0.5 and (tmp_path / "survivor" / "oof.csv").is_file()
    assert (tmp_path / "survivor" / "attempts.txt").read_text() == "attempt\n"


# -- a whole run -----------------------------------------------------------------------------------------------------

SMALL_RUN = dict(num_models=1, outer_steps=1, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
                 script_timeout=120, n_folds=3)


def _run(tmp_path: Path, name: str, executor: str) -> tuple[Store, str]:
    store = Store(tmp_path / name / "store")
    run_id = create_run(store, load_task(ROOT / "demo_tasks" / "breast-cancer"),
                        RunConfig(**SMALL_RUN, executor=executor), out_dir=tmp_path / name / "out")
    Pipeline(store, run_id).run()
    return store, run_id


def test_a_whole_small_run_on_the_cluster(both_workers: DaskExecutor, cluster: object, tmp_path: Path) -> None:
    address = cluster.scheduler_address.removeprefix("tcp://")  # type: ignore[attr-defined]
    # The same run on this machine, alongside in its own process (two pipelines in one CPython 3.11 process can trip
    # its "AST constructor recursion depth mismatch"); the offline brain and the seeds make both runs the same.
    knobs = ["-M", "1", "-T", "1", "-K", "1", "-L", "1", "-R", "0", "--workers", "2", "--script-timeout", "120",
             "--folds", "3", "--executor", "local"]
    local = tmp_path / "local"
    local.mkdir()
    with open(local / "cli.log", "wb") as log:
        beside = subprocess.Popen([sys.executable, "-m", "mlestar_core", "--store", str(local / "store"), "run",
                                   "--task", str(ROOT / "demo_tasks" / "breast-cancer"), "--out", str(local / "out"),
                                   *knobs], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        store, run_id = _run(tmp_path, "dask", f"dask://{address}")
        assert beside.wait(timeout=240) == 0, (local / "cli.log").read_text()[-2000:]
    run = store.get_run(run_id)
    assert run["status"] == "finished", run.get("error")
    assert (tmp_path / "dask" / "out" / "submission.csv").is_file()
    assert run["holdout_score"] is not None and run["best_score"] is not None
    executions = store.table("executions", run_id)
    roles = {store.get_script(e["script_id"])["role"] for e in executions}
    assert {"baseline", "initial", "ablation", "refine"} <= roles  # each kind of script went to the cluster
    assert all(e["score"] is not None for e in executions if e["purpose"] == "search" and e["exit_code"] == 0)
    assert (store.run_dir(run_id) / "model").is_dir()  # the final run's kept model came back from its worker
    local_store = Store(local / "store")
    (local_run,) = local_store.list_runs()
    local_id = local_run["id"]
    assert local_store.get_run(local_id)["status"] == "finished"
    assert {e["kind"] for e in store.events_after(run_id)} == {e["kind"] for e in local_store.events_after(local_id)}
    assert run["best_score"] == pytest.approx(local_store.get_run(local_id)["best_score"])


# -- the app -------------------------------------------------------------------------------------------------------


def test_new_run_page_sets_where_scripts_run(both_workers: DaskExecutor, cluster: object, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from mlestar_core.service import RunManager
    from studio.state import NewRunKeys as K

    monkeypatch.setenv("MLESTAR_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    configs: list[RunConfig] = []

    def fake_start(self: RunManager, task: object, config: RunConfig, **kwargs: object) -> str:
        configs.append(config)  # what the page asked for; the pipeline itself is tested above
        return create_run(self.store, task, config)  # type: ignore[arg-type]

    monkeypatch.setattr(RunManager, "start", fake_start)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"dask://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLESTAR_EXECUTOR", dead)  # the app's default: a scheduler that is down
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/new_run.py").run()
    at.radio(key=K.SOURCE).set_value("demo").run()
    assert at.text_input(key=K.EXECUTOR).value == dead
    assert at.button(key=K.START).disabled
    assert "does not answer" in "\n".join(str(w.value) for w in at.warning)
    assert "Scripts run on:** Dask cluster" in "\n".join(str(w.value) for w in at.sidebar.warning)
    live = "dask://" + cluster.scheduler_address.removeprefix("tcp://")  # type: ignore[attr-defined]
    at.text_input(key=K.EXECUTOR).input(live).run()
    assert not at.button(key=K.START).disabled
    assert "2 workers" in "\n".join(str(c.value) for c in at.caption)
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception
    assert configs[-1].executor == live
