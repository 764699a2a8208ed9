"""LocalExecutor runs real subprocesses: each test starts real Python scripts (a few seconds at most)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlestar_core.executor import ExecResult, Job, LocalExecutor, scrubbed_env

pytestmark = pytest.mark.timeout(30)  # a hung kill path must fail the test, not hang the suite

SCORE = 'print("Final Validation Performance: 0.75")\n'


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


_marks = iter(range(1, 10**6))


def mark() -> str:
    """A unique `sleep` argument: a sandboxed script's PIDs mean nothing out here, its command line does."""
    return f"1000.{os.getpid()}{next(_marks):04d}"


def running(marker: str) -> list[int]:
    """Live processes whose command line holds marker (PID 1 on some VMs never reaps orphans, so zombies
    count as gone)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


# Each test that takes `ex` runs with the sandbox (when bubblewrap works here) and in the fallback.
MODES = ["auto", "none"]


@pytest.fixture(params=MODES)
def ex(request: pytest.FixtureRequest) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(workers=2, timeout=20, sandbox=request.param)
    yield executor
    executor.close()


def test_runs_script_as_subprocess_in_own_session(ex: LocalExecutor, tmp_path: Path) -> None:
    code = src(
        """
        import json, os, sys
        info = {
            "cwd": os.getcwd(),
            "argv0": sys.argv[0],
            "stdin": os.readlink("/proc/self/fd/0"),
            "stdin_data": sys.stdin.read(),
            "own_session": os.getsid(0) == os.getpid() and os.getpgid(0) == os.getpid(),
            "sid": os.getsid(0),
            "pid": os.getpid(),
        }
        print(json.dumps(info))
        print("to stderr", file=sys.stderr)
        print("Final Validation Performance: 0.8125")
        """
    )
    res = ex.run(Job(code=code, workdir=tmp_path / "w", script_name="main.py"))
    assert res.ok and res.exit_code == 0 and res.score == 0.8125
    assert res.killed_reason is None and not res.timed_out and not res.memory_exceeded
    info = json.loads(res.stdout.splitlines()[0])
    assert Path(info["cwd"]) == (tmp_path / "w").resolve()
    assert info["argv0"] == "main.py"
    assert info["stdin"] == "/dev/null" and info["stdin_data"] == ""
    if ex.sandboxed:
        # Its own PID namespace: bwrap's init is PID 1 and leads the new session the script runs in.
        assert info["sid"] == 1 and info["pid"] > 1 and res.sandbox == "bwrap"
    else:
        assert info["own_session"] and info["pid"] != os.getpid() and res.sandbox == "none"
    assert (tmp_path / "w" / "main.py").read_text() == code
    assert (tmp_path / "w" / "stdout.txt").read_text() == res.stdout
    assert (tmp_path / "w" / "stderr.txt").read_text() == res.stderr == "to stderr\n"
    assert res.wall_time > 0 and res.peak_memory_mb > 1
    assert res.error_text() == ""


def test_no_score_line_is_not_ok(ex: LocalExecutor, tmp_path: Path) -> None:
    res = ex.run(Job(code='print("trained, but forgot the score")\n', workdir=tmp_path))
    assert res.exit_code == 0 and res.score is None and not res.ok
    assert "no score line was printed" in res.error_text()
    assert "Final Validation Performance" in res.error_text()


def test_crash_reports_exit_code_and_traceback(ex: LocalExecutor, tmp_path: Path) -> None:
    code = src(
        """
        print("loading")
        def train():
            raise ValueError("column 'target' not found")
        train()
        """
    )
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == 1 and not res.ok and res.killed_reason is None
    text = res.error_text()
    assert text.startswith("The script failed with exit code 1.")
    assert "Traceback" in text and "ValueError: column 'target' not found" in text
    short = res.error_text(limit=120)
    assert len(short) <= 120 and short.endswith("not found")  # the tail is kept, not the head


def test_death_by_signal_is_not_mistaken_for_memory(ex: LocalExecutor, tmp_path: Path) -> None:
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == -9
    assert not res.memory_exceeded and res.killed_reason is None
    assert "SIGKILL" in res.error_text()


def test_output_is_capped_head_and_tail(tmp_path: Path) -> None:
    code = src(
        """
        import sys
        print("FIRST LINE")
        for i in range(100_000):
            print("x" * 40, i)
            print("e" * 40, i, file=sys.stderr)
        print("Final Validation Performance: 0.5")
        """
    )
    ex = LocalExecutor(workers=1, timeout=20, output_cap=20_000)
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert (tmp_path / "stdout.txt").stat().st_size > 4_000_000  # the file has it all
    for text in (res.stdout, res.stderr):
        assert len(text) <= 20_000 + 100
        assert "bytes cut ...]" in text
    assert res.stdout.startswith("FIRST LINE\n")
    assert res.score == 0.5 and res.ok  # the tail with the score line survives


def test_capping_never_leaves_half_a_score_line(tmp_path: Path) -> None:
    # The 50-byte head ends inside the score line, which would otherwise parse as "0.".
    code = 'import sys\nsys.stdout.write("a" * 17 + "\\nFinal Validation Performance: 0.95\\n")\n'
    code += 'sys.stdout.write("z" * 60 + "\\n")\n'
    code += 'sys.stdout.write(("y" * 60 + "\\n") * 20)\n'
    res = LocalExecutor(workers=1, output_cap=100).run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == 0 and "bytes cut ...]" in res.stdout
    assert "Final Validation" not in res.stdout and res.score is None


def test_timeout_kills_whole_process_group(ex: LocalExecutor, tmp_path: Path) -> None:
    marker = mark()
    code = src(
        f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "{marker}"])
        print("GRANDCHILD", child.pid, flush=True)
        while True:
            time.sleep(0.05)
        """
    )
    t0 = time.monotonic()
    res = ex.run(Job(code=code, workdir=tmp_path, timeout=1.0))
    elapsed = time.monotonic() - t0
    assert res.timed_out and res.killed_reason == "timeout" and not res.ok
    assert 1.0 <= elapsed < 2.5  # SIGTERM suffices here, so no waiting for the grace period
    assert res.exit_code == -15
    assert "GRANDCHILD" in res.stdout and not running(marker)
    assert "Timed out after 1s" in res.error_text()


@pytest.mark.parametrize("mode", MODES)
def test_timeout_escalates_to_sigkill_for_processes_ignoring_sigterm(tmp_path: Path, mode: str) -> None:
    marker = mark()
    code = src(
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild below
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep({marker})"])
        print("GRANDCHILD", child.pid, flush=True)
        while True:
            time.sleep(0.05)
        """
    )
    ex = LocalExecutor(workers=1, timeout=0.5, sandbox=mode)  # default grace of 2 s
    t0 = time.monotonic()
    res = ex.run(Job(code=code, workdir=tmp_path))
    elapsed = time.monotonic() - t0
    assert res.timed_out and res.exit_code == -9
    assert 2.4 <= elapsed < 4.0
    assert "GRANDCHILD" in res.stdout and not running(marker)


def test_leftover_children_of_a_finished_script_are_killed(ex: LocalExecutor, tmp_path: Path) -> None:
    marker = mark()
    code = f'import subprocess\nprint("GRANDCHILD", subprocess.Popen(["sleep", "{marker}"]).pid)\n' + SCORE
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.ok
    assert "GRANDCHILD" in res.stdout and not running(marker)


def test_memory_cap(tmp_path: Path) -> None:
    code = src(
        """
        import resource
        print("LIMIT", resource.getrlimit(resource.RLIMIT_AS)[0], flush=True)
        blob = bytearray(3 * 256 * 2**20)
        print("Final Validation Performance: 1.0")
        """
    )
    ex = LocalExecutor(workers=1, timeout=20, memory_mb=256)
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert f"LIMIT {256 * 2**20}" in res.stdout
    assert res.memory_exceeded and res.killed_reason == "memory"
    assert not res.ok and not res.timed_out and res.score is None
    text = res.error_text()
    assert "Memory cap of 256 MB exceeded" in text and "MemoryError" in text


def test_peak_memory_is_measured(ex: LocalExecutor, tmp_path: Path) -> None:
    code = 'import time\nblob = b"\\x01" * (200 * 2**20)\ntime.sleep(0.5)\n' + SCORE
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.ok
    assert 190 <= res.peak_memory_mb < 1000


def test_ml_stack_imports_and_trains_under_default_cap(tmp_path: Path) -> None:
    code = src(
        """
        import resource
        import numpy as np
        import pandas as pd
        import xgboost as xgb
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        assert resource.getrlimit(resource.RLIMIT_AS)[0] == 4096 * 2**20
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(2000, 8)), columns=[f"f{i}" for i in range(8)])
        y = (X["f0"] + X["f1"] > 0).astype(int)
        Xtr, Xva, ytr, yva = train_test_split(X, y, random_state=0)
        lr = LogisticRegression().fit(Xtr, ytr)
        model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(Xtr, ytr)
        score = (model.score(Xva, yva) + lr.score(Xva, yva)) / 2
        print(f"Final Validation Performance: {score:.4f}")
        """
    )
    ex = LocalExecutor(workers=1, timeout=60)
    assert ex.memory_mb == 4096
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.ok, res.error_text()
    assert res.score is not None and res.score > 0.8


def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "GEMINI_API_KEY": "gem-secret-3141",
        "GOOGLE_API_KEY": "goog-secret-2718",
        "OPENAI_API_KEY": "sk-secret-1618",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-1414",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENBLAS_CORETYPE", os.environ.get("OPENBLAS_CORETYPE", "Haswell"))
    code = 'import os\nprint(dict(os.environ))\nprint(os.path.isdir(os.environ["TMPDIR"]))\n'
    ex = LocalExecutor(workers=2, threads_per_job=1)
    res = ex.run(Job(code=code, workdir=tmp_path, env={"MY_FLAG": "on"}))
    assert res.exit_code == 0, res.error_text()
    for name, value in secrets.items():
        assert name not in res.stdout and value not in res.stdout
    env = eval(res.stdout.splitlines()[0])  # noqa: S307 - our own test script's dict repr
    assert env["HOME"] == str(tmp_path) and env["TMPDIR"] == str(tmp_path / "tmp")
    assert res.stdout.splitlines()[1] == "True"
    assert env["PYTHONHASHSEED"] == "0" and env["PYTHONUNBUFFERED"] == "1"
    assert env["LC_ALL"] == env["LANG"] == "C.UTF-8" and env["MPLBACKEND"] == "Agg"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["MLESTAR_THREADS"] == "1"
    assert env["OPENBLAS_CORETYPE"] == os.environ["OPENBLAS_CORETYPE"]
    assert env["MY_FLAG"] == "on"


def test_scrubbed_env_is_an_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_TOKEN", "t0k3n")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    env = scrubbed_env({"OMP_NUM_THREADS": "3"}, tmp_path / "wd", threads=2)
    assert "SOME_TOKEN" not in env and "t0k3n" not in env.values()
    assert "OPENBLAS_L2_SIZE" not in env
    assert env["OMP_NUM_THREADS"] == "3"  # job.env wins
    assert env["MKL_NUM_THREADS"] == env["MLESTAR_THREADS"] == "2"
    assert (tmp_path / "wd" / "tmp").is_dir()
    assert set(env) <= {
        "PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE", "MPLBACKEND", "MALLOC_ARENA_MAX", "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "MLESTAR_THREADS",
        "LOKY_MAX_CPU_COUNT", "OPENBLAS_CORETYPE", "OMP_WAIT_POLICY",
    }  # fmt: skip
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # idle OpenMP threads must not spin on a busy machine
    with pytest.raises(TypeError):
        scrubbed_env({"N": 1}, tmp_path, threads=1)  # type: ignore[dict-item]


def test_default_threads_per_job_splits_the_cores() -> None:
    cpus = os.cpu_count() or 1
    assert LocalExecutor(workers=1).threads_per_job == cpus
    assert LocalExecutor(workers=cpus * 4).threads_per_job == 1
    assert LocalExecutor(workers=1, threads_per_job=3).threads_per_job == 3


def test_inputs_are_linked_under_input(ex: LocalExecutor, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "sub" / "notes.txt").write_text("nested")
    code = src(
        """
        print(open("input/train.csv").read().splitlines()[1])
        print(open("./input/sub/notes.txt").read())
        print("Final Validation Performance: 1")
        """
    )
    wd = tmp_path / "run"
    res = ex.run(Job(code=code, workdir=wd, inputs=data))
    assert res.ok, res.error_text()
    assert res.stdout.splitlines()[:2] == ["1,2", "nested"]
    if ex.sandboxed:  # a read-only bind mount: out here only the empty mount point is seen
        assert (wd / "input").is_dir() and list((wd / "input").iterdir()) == []
    else:  # links to files made read-only (writes through them are detected, see test_sandbox.py)
        assert (wd / "input" / "train.csv").is_symlink()
        assert (wd / "input" / "sub" / "notes.txt").resolve() == (data / "sub" / "notes.txt").resolve()
        assert not (data / "train.csv").stat().st_mode & 0o222
    # A second run in the same folder relinks, and inputs that went away do not linger.
    (data / "sub" / "notes.txt").unlink()
    res = ex.run(Job(code='import os\nprint(sorted(os.listdir("input/sub")))\n', workdir=wd, inputs=data))
    assert res.stdout.strip() == "[]"


def test_run_many_is_parallel_and_keeps_job_order(tmp_path: Path) -> None:
    def sleeper(seconds: float, score: int) -> str:
        return f"import time\ntime.sleep({seconds})\nprint('Final Validation Performance: {score}')\n"

    ex = LocalExecutor(workers=2, timeout=20)
    jobs = [Job(sleeper(1.5, 1), tmp_path / "a"), Job(sleeper(1.2, 2), tmp_path / "b")]
    t0 = time.monotonic()
    results = ex.run_many(jobs)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.7  # serially it would take at least 2.7 s
    assert [r.score for r in results] == [1, 2]  # job order, though the second finished first
    assert all(isinstance(r, ExecResult) and r.ok for r in results)
    assert ex.run_many([]) == []


def test_workers_cap_concurrency_across_threads(tmp_path: Path) -> None:
    code = 'import time\nprint("START", time.time())\ntime.sleep(0.6)\n' + SCORE
    ex = LocalExecutor(workers=1, timeout=20)
    results: dict[int, ExecResult] = {}

    def go(i: int) -> None:
        results[i] = ex.run(Job(code=code, workdir=tmp_path / str(i)))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts = sorted(float(r.stdout.split("START")[1].split()[0]) for r in results.values())
    assert all(r.ok for r in results.values())
    assert starts[1] - starts[0] >= 0.55  # the second waited for the only slot


def test_concurrent_runs_from_several_threads(tmp_path: Path) -> None:
    ex = LocalExecutor(workers=2, timeout=20)
    results: dict[int, ExecResult] = {}

    def go(i: int) -> None:
        code = f"import time\ntime.sleep(0.2)\nprint('Final Validation Performance: {i}')\n"
        results[i] = ex.run(Job(code=code, workdir=tmp_path / f"job{i}", label=f"job {i}"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: r.score for i, r in results.items()} == {i: float(i) for i in range(5)}


@pytest.mark.parametrize("mode", MODES)
def test_cancel_all_stops_running_and_queued_jobs(tmp_path: Path, mode: str) -> None:
    marker = mark()
    code = f'import subprocess, time\nprint("GRANDCHILD", subprocess.Popen(["sleep", "{marker}"]).pid)\n'
    code += "time.sleep(30)\n"
    ex = LocalExecutor(workers=2, timeout=60, sandbox=mode)
    jobs = [Job(code=code, workdir=tmp_path / str(i)) for i in range(3)]  # the third waits for a slot
    timer = threading.Timer(0.5, ex.cancel_all)
    timer.start()
    t0 = time.monotonic()
    results = ex.run_many(jobs)
    elapsed = time.monotonic() - t0
    timer.join()
    assert elapsed < 3.0
    assert [r.killed_reason for r in results] == ["cancelled"] * 3
    assert not any(r.timed_out or r.ok for r in results)
    assert results[2].exit_code is None  # never started
    assert all("GRANDCHILD" in r.stdout for r in results[:2]) and not running(marker)
    assert "Cancelled" in results[0].error_text()
    # The executor stays usable after a cancel.
    assert ex.run(Job(code=SCORE, workdir=tmp_path / "after")).ok


def test_missing_interpreter_is_a_result_not_an_exception(tmp_path: Path) -> None:
    ex = LocalExecutor(workers=1, python=str(tmp_path / "no-such-python"))
    res = ex.run(Job(code=SCORE, workdir=tmp_path / "w"))
    assert res.exit_code is None and not res.ok and res.killed_reason is None
    assert "no-such-python" in res.stderr
    assert res.error_text().startswith("The script could not be started.")


def test_programming_errors_raise(ex: LocalExecutor, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError):
        ex.run(Job(code=SCORE, workdir=blocker / "sub"))  # workdir cannot be created
    with pytest.raises(NotADirectoryError):
        ex.run(Job(code=SCORE, workdir=tmp_path / "w", inputs=tmp_path / "missing"))
    with pytest.raises(ValueError):
        ex.run(Job(code=SCORE, workdir=tmp_path / "w", script_name="../escape.py"))
    ex.close()
    with pytest.raises(RuntimeError):
        ex.run(Job(code=SCORE, workdir=tmp_path / "w"))


def test_relative_python_path_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = Path(sys.executable)
    monkeypatch.chdir(exe.parent.parent)
    ex = LocalExecutor(workers=1, python=os.path.join(exe.parent.name, exe.name))
    assert ex.run(Job(code=SCORE, workdir=tmp_path)).ok


def test_stop_check_stops_a_running_script(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import time
        for k in range(20):
            print(f"Fold score: repeat=0 fold={k} value=0.1", flush=True)
            time.sleep(0.3)
        print("Final Validation Performance: 0.1")
    """)
    seen: list[str] = []

    def check(stdout: str) -> str | None:
        seen.append(stdout)
        return "it cannot catch up" if stdout.count("Fold score") >= 3 else None

    with LocalExecutor(workers=1, timeout=60) as ex:
        res = ex.run(Job(code=code, workdir=tmp_path / "w", stop_check=check))
    assert res.killed_reason == "early_stop" and not res.ok
    assert res.early_stop == "it cannot catch up" and "Stopped early: it cannot catch up" in res.error_text()
    assert "Final Validation Performance" not in res.stdout and res.stdout.count("Fold score") < 20
    assert seen and all("Final Validation Performance" not in s for s in seen)
