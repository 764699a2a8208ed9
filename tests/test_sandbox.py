"""The sandbox against real attacker scripts, run through LocalExecutor (sandbox.py, executor.py).

Each test starts real processes. The sandboxed ones are skipped, with the reason, only where
bubblewrap cannot run; the fallback tests run everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from mlestar_core import hardening, sandbox
from mlestar_core.executor import Job, LocalExecutor

pytestmark = pytest.mark.timeout(60)

BWRAP_OK, BWRAP_WHY = sandbox.probe_bwrap()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap does not work here: {BWRAP_WHY}")
CGROUPS = sandbox.probe_cgroups()
SCORE = 'print("Final Validation Performance: 0.5")\n'
_marks = iter(range(1, 10**6))


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


def mark() -> str:
    """A unique `sleep` argument: a sandboxed script's PIDs mean nothing out here, its command line does."""
    return f"1000.{os.getpid()}{next(_marks):04d}"


def escapes(m1: str, m2: str) -> str:
    """Script lines starting two processes that try to escape the job: a new session, and a double fork."""
    return src(
        f"""
        import os, subprocess, time
        subprocess.Popen(["sleep", "{m1}"], start_new_session=True)
        if os.fork() == 0:
            if os.fork() == 0:
                os.setsid()
                os.execvp("sleep", ["sleep", "{m2}"])
            os._exit(0)
        """
    )


def running(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line holds marker."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def wait_until(cond, timeout: float) -> bool:  # noqa: ANN001 - a zero-argument predicate
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def sandboxed(**kw: object) -> LocalExecutor:
    kw.setdefault("workers", 1)
    kw.setdefault("timeout", 30)
    return LocalExecutor(sandbox="bwrap", **kw)  # type: ignore[arg-type]


# -- status and modes ---------------------------------------------------------------------------------


@needs_bwrap
def test_status_says_what_is_enforced() -> None:
    iso = sandboxed().isolation
    assert iso.mode == "bwrap" and iso.sandboxed
    assert iso.user_namespace and iso.pid_namespace and iso.network_isolated and iso.filesystem_isolated
    assert iso.inputs_read_only == "read-only bind mount" and iso.app_environ_hidden
    assert iso.memory_limit in ("cgroup v1", "cgroup v2", "summed RSS")
    assert "bubblewrap sandbox" in iso.message and "NOT protected" in iso.message
    assert sandbox.status("auto").mode == "bwrap"


def test_fallback_reports_honestly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "none")  # the env var picks the default mode
    iso = LocalExecutor(workers=1, cgroups=False).isolation
    assert iso.requested == "none" and iso.mode == "none" and not iso.sandboxed
    assert not (iso.user_namespace or iso.network_isolated or iso.filesystem_isolated)
    assert iso.memory_limit == "summed RSS" and iso.inputs_read_only == "tamper detection only"
    assert "SANDBOX OFF" in iso.message and "CAN read" in iso.message and "mlestar.db" in iso.message
    assert iso.problems and not iso.fully_enforced
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "sideways")
    with pytest.raises(ValueError, match="MLESTAR_SANDBOX"):
        LocalExecutor(workers=1)


def test_explicit_bwrap_is_never_downgraded_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_bwrap_probe", (False, "bwrap is not installed"))
    with pytest.raises(RuntimeError, match="bwrap is not installed"):
        LocalExecutor(workers=1, sandbox="bwrap")
    auto = LocalExecutor(workers=1, sandbox="auto")
    assert auto.isolation.mode == "none" and "bwrap is not installed" in auto.isolation.message
    assert sandbox.status("bwrap").mode == "none"  # the module function reports instead of raising


def test_interpreter_layout_never_binds_the_project_folder() -> None:
    layout = sandbox.interpreter_layout(sys.executable)
    assert layout.binds
    for path in layout.binds:
        assert not sandbox.PROJECT_DIR.is_relative_to(path), path  # neither the folder nor a parent of it
        if Path(path).is_relative_to(sandbox.PROJECT_DIR):
            assert Path(sys.prefix).resolve() in (Path(path), *Path(path).parents)  # only the venv


# -- file system --------------------------------------------------------------------------------------


@needs_bwrap
def test_cannot_read_anything_outside_workdir_and_inputs(tmp_path: Path) -> None:
    token = "TOPSECRET-7f3a9"
    project = tmp_path / "project"
    data = project / "runs" / "r1" / "data"
    (data / "search").mkdir(parents=True)
    (data / "search" / "train.csv").write_text("a,b\n1,2\n")
    secrets = [data / "holdout_answers.csv", project / "mlestar.db", project / ".streamlit" / "secrets.toml",
               project / "runs" / "r2" / "work" / "00001-x" / "oof.csv", tmp_path / "secrets.toml",
               tmp_path / "mlestar.db", tmp_path / "holdout_answers.csv"]
    for path in secrets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"id,target\n1,{token}\n")
    workdir = project / "runs" / "r1" / "work" / "00002-y"
    tries = [str(p) for p in secrets] + [
        "../../data/holdout_answers.csv", "../../../../mlestar.db", "../../../../.streamlit/secrets.toml",
        "input/../../../data/holdout_answers.csv", str(sandbox.PROJECT_DIR / "pyproject.toml"),
        "/root/.bash_history", "/etc/shadow", "/etc/hostname",
    ]
    code = src(
        f"""
        import json, os
        out = {{"read": [], "found": [], "project": None}}
        for path in {tries!r}:
            try:
                with open(path) as f:
                    out["read"].append([path, f.read()[:100]])
            except OSError:
                pass
        for top in ("/", "/tmp", "/root", "/work", "/etc", os.path.dirname(os.getcwd())):
            for root, dirs, files in os.walk(top):
                if root.startswith(("/proc", "/usr", "/dev", "/sys", {sys.prefix!r}, {sys.base_prefix!r})):
                    dirs[:] = []
                    continue
                out["found"] += [os.path.join(root, n) for n in files
                                 if n in ("holdout_answers.csv", "mlestar.db", "secrets.toml")]
        try:
            out["project"] = sorted(os.listdir({str(sandbox.PROJECT_DIR)!r}))
        except OSError as exc:
            out["project"] = str(exc)
        out["parent"] = sorted(os.listdir(".."))
        out["input"] = sorted(os.listdir("input"))
        print(json.dumps(out))
        """
    )
    res = sandboxed().run(Job(code=code, workdir=workdir, inputs=data / "search"))
    assert res.exit_code == 0, res.error_text()
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["read"] == [] and out["found"] == [] and token not in res.stdout
    # Only the venv is bound from the project folder (or nothing, when the interpreter lives elsewhere).
    assert out["project"] == [".venv"] or "No such file" in str(out["project"])
    assert out["parent"] == ["00002-y"]  # no sibling run folders
    assert out["input"] == ["train.csv"]


@needs_bwrap
def test_links_out_of_the_workdir_are_removed_before_the_engine_reads_outputs(tmp_path: Path) -> None:
    answers = tmp_path / "data" / "holdout_answers.csv"
    answers.parent.mkdir()
    answers.write_text("id,target\n1,0.123456\n")
    code = src(
        f"""
        import os
        os.symlink({str(answers)!r}, "submission.csv")  # unreadable in here, but the engine reads out there
        os.symlink("../..", "up")
        os.mkfifo("oof.csv")  # would block the engine's read forever
        os.symlink("model.txt", "inside-link")
        open("model.txt", "w").write("kept")
        print("Final Validation Performance: 0.5")
        """
    )
    res = sandboxed().run(Job(code=code, workdir=tmp_path / "w"))
    assert res.ok, res.error_text()
    assert sorted(res.removed_links or []) == ["oof.csv", "submission.csv", "up"]
    assert not (tmp_path / "w" / "submission.csv").exists() and not (tmp_path / "w" / "oof.csv").exists()
    assert (tmp_path / "w" / "inside-link").read_text() == "kept"  # links within the folder are fine


@needs_bwrap
def test_inputs_are_read_only_in_the_sandbox(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    before = (data / "train.csv").stat()
    code = src(
        """
        import os, shutil
        def attempt(name, fn):
            try:
                fn()
                print("SUCCEEDED", name)
            except OSError as exc:
                print("refused", name, type(exc).__name__)
        attempt("write", lambda: open("input/train.csv", "w").write("poisoned"))
        attempt("append", lambda: open("input/train.csv", "a").write("9,9\\n"))
        attempt("remove", lambda: os.remove("input/train.csv"))
        attempt("chmod", lambda: os.chmod("input/train.csv", 0o666))
        attempt("create", lambda: open("input/new.csv", "w").write("x"))
        attempt("rename dir", lambda: os.rename("input", "moved"))
        attempt("rmtree", lambda: shutil.rmtree("input"))
        print(open("input/train.csv").read().splitlines()[1])
        print("Final Validation Performance: 1")
        """
    )
    res = sandboxed().run(Job(code=code, workdir=tmp_path / "w", inputs=data))
    assert res.ok, res.error_text()
    assert "SUCCEEDED" not in res.stdout and res.stdout.count("refused") == 7
    assert (data / "train.csv").read_text() == "a,b\n1,2\n"
    after = (data / "train.csv").stat()
    assert (after.st_mtime_ns, after.st_ino, after.st_mode) == (before.st_mtime_ns, before.st_ino, before.st_mode)
    assert sorted(p.name for p in data.iterdir()) == ["train.csv"]


def test_fallback_detects_input_tampering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "test.csv").write_text("a\n3\n")
    code = src(
        """
        import os
        path = os.path.realpath("input/train.csv")
        try:
            open(path, "a").write("9,9\\n")  # root writes despite the read-only mode bits
        except PermissionError:
            os.chmod(path, 0o644)  # the owner may give them back
            open(path, "a").write("9,9\\n")
        print("Final Validation Performance: 1")
        """
    )
    ex = LocalExecutor(workers=1, timeout=30, sandbox="none")
    res = ex.run(Job(code=code, workdir=tmp_path / "w", inputs=data))
    assert res.exit_code == 0 and res.killed_reason == "tampered" and not res.ok
    assert res.tampered_inputs == ["train.csv"]
    assert "changed its read-only input files (train.csv)" in res.reason()
    # An honest script in the same setting passes, and the files were made read-only for it.
    res = ex.run(Job(code="print(open('input/test.csv').read())\n" + SCORE, workdir=tmp_path / "w2", inputs=data))
    assert res.ok and res.tampered_inputs is None
    assert not (data / "test.csv").stat().st_mode & 0o222


# -- network, processes, secrets -------------------------------------------------------------------------


@needs_bwrap
def test_no_network(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    port = server.getsockname()[1]
    code = src(
        f"""
        import socket
        for host, port in (("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)):
            try:
                socket.create_connection((host, port), timeout=2).close()
                print("CONNECTED", host)
            except OSError as exc:
                print("blocked", host, type(exc).__name__)
        """
    )
    try:
        res = sandboxed().run(Job(code=code, workdir=tmp_path))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever reached the test's socket
    finally:
        server.close()
    assert res.exit_code == 0, res.error_text()
    assert "CONNECTED" not in res.stdout and res.stdout.count("blocked") == 3


@needs_bwrap
def test_app_environ_is_not_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "gem-env-secret-0f1e2d3c"
    monkeypatch.setenv("GEMINI_API_KEY", secret)
    code = src(
        f"""
        import glob
        hits = []
        try:
            print(open("/proc/{os.getpid()}/environ", "rb").read()[:50])
            print("APP ENVIRON READ")
        except OSError as exc:
            print("app environ:", type(exc).__name__)
        for path in glob.glob("/proc/*/environ"):
            try:
                if b"GEMINI_API_KEY" in open(path, "rb").read():
                    hits.append(path)
            except OSError:
                pass
        print("hits", hits)
        """
    )
    res = sandboxed().run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == 0, res.error_text()
    assert "APP ENVIRON READ" not in res.stdout and "app environ: FileNotFoundError" in res.stdout
    assert "hits []" in res.stdout


def test_secrets_are_scrubbed_from_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardening, "_registered", set())
    env_secret, registered = "AIza-env-4c9b1e77aa", "reg-secret-5d2e8f31"
    monkeypatch.setenv("GEMINI_API_KEY", env_secret)
    hardening.register_secret(registered)
    code = src(
        f"""
        import sys
        print("key: {env_secret} and {registered}")
        print("leak {registered}", file=sys.stderr)
        print("Final Validation Performance: 0.5")
        """
    )
    mode = "auto" if BWRAP_OK else "none"
    res = LocalExecutor(workers=1, timeout=30, sandbox=mode).run(Job(code=code, workdir=tmp_path))
    assert res.ok, res.error_text()
    for text in (res.stdout, res.stderr, (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()):
        assert env_secret not in text and registered not in text and hardening.REDACTED in text
    assert res.stdout.startswith("key: [REDACTED] and [REDACTED]")


MEMORY_HOG = src(
    """
    import os, time
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            blob = b"x" * (300 * 2**20)  # touched, so it is resident
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
    time.sleep(60)
    """
)


@needs_bwrap
def test_memory_cap_holds_for_the_whole_tree(tmp_path: Path) -> None:
    ex = sandboxed(memory_mb=600)
    t0 = time.monotonic()
    res = ex.run(Job(code=MEMORY_HOG, workdir=tmp_path))
    assert time.monotonic() - t0 < 20
    assert res.memory_exceeded and res.killed_reason == "memory" and not res.ok
    assert "Memory cap of 600 MB exceeded" in res.reason()


def test_fallback_summed_rss_cap_kills_the_tree(tmp_path: Path) -> None:
    ex = LocalExecutor(workers=1, timeout=30, memory_mb=600, sandbox="none", cgroups=False)
    assert ex.isolation.memory_limit == "summed RSS"
    t0 = time.monotonic()
    res = ex.run(Job(code=MEMORY_HOG, workdir=tmp_path))
    assert time.monotonic() - t0 < 20
    assert res.memory_exceeded and res.killed_reason == "memory" and res.exit_code == -9
    assert 500 < res.peak_memory_mb < 1100


@needs_bwrap
def test_disk_cap_kills_a_script_writing_too_much(tmp_path: Path) -> None:
    code = src(
        """
        import time
        chunk = b"d" * (10 * 2**20)
        for i in range(20):  # 200 MB in files of 10 MB: each under RLIMIT_FSIZE, the sum is not
            with open(f"out{i}.bin", "wb") as f:
                f.write(chunk)
        print("wrote all", flush=True)
        time.sleep(60)
        """
    )
    t0 = time.monotonic()
    res = sandboxed(disk_mb=50).run(Job(code=code, workdir=tmp_path))
    assert time.monotonic() - t0 < 15
    assert res.killed_reason == "disk" and not res.ok and res.exit_code == -9
    assert "Disk cap of 50 MB exceeded" in res.reason()


@needs_bwrap
def test_disk_cap_stops_one_huge_file(tmp_path: Path) -> None:
    code = 'f = open("big.bin", "wb")\nfor _ in range(200):\n    f.write(b"d" * 2**20)\n' + SCORE
    res = sandboxed(disk_mb=50).run(Job(code=code, workdir=tmp_path))
    assert res.killed_reason == "disk" and not res.ok
    assert "File too large" in res.stderr
    assert (tmp_path / "big.bin").stat().st_size <= 50 * 2**20


@needs_bwrap
@pytest.mark.skipif(CGROUPS.pids is None and sandbox.is_root(),
                    reason="no pids cgroup, and RLIMIT_NPROC does not bind root: a fork bomb would not be bounded")
def test_fork_bomb_is_bounded(tmp_path: Path) -> None:
    code = src(
        """
        import os, time
        first = os.getpid()
        end = time.time() + 3
        while time.time() < end:
            try:
                if os.fork() == 0:
                    time.sleep(0.2)  # every child forks on too: a real bomb
            except OSError:
                time.sleep(0.01)
        if os.getpid() == first:
            print("PROCS", len([p for p in os.listdir("/proc") if p.isdigit()]), flush=True)
            os._exit(0)
        time.sleep(60)
        """
    )
    res = sandboxed(max_procs=40, timeout=20).run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == 0, res.error_text()
    procs = int(res.stdout.split("PROCS")[1].split()[0])
    assert 10 < procs <= 40  # it did fork, and no further than the cap


@needs_bwrap
def test_setsid_child_and_double_forked_grandchild_die_with_the_job(tmp_path: Path) -> None:
    m1, m2 = mark(), mark()
    code = escapes(m1, m2) + src(
        """
        time.sleep(0.5)
        print(sorted(os.listdir("/proc")), flush=True)
        time.sleep(1.0)  # the stop_check below looks while they all live
        print("Final Validation Performance: 1")
        """
    )
    seen: list[int] = []

    def watch(_: str) -> None:  # the job's stop_check runs while it runs: note the escapees live
        seen.extend(running(m1) + running(m2))

    res = sandboxed().run(Job(code=code, workdir=tmp_path, stop_check=watch))
    assert res.ok, res.error_text()
    assert seen, "the escapees never ran"
    assert wait_until(lambda: not running(m1) and not running(m2), 3.0)


@needs_bwrap
def test_kill_9_of_the_app_kills_every_script_process(tmp_path: Path) -> None:
    m1, m2, name = mark(), mark(), f"attack_{mark().replace('.', '_')}.py"
    workdir = tmp_path / "w"
    attacker = escapes(m1, m2) + src(
        """
        time.sleep(0.3)
        open("pid", "w").write(str(os.getpid()))
        while True:
            time.sleep(0.1)
        """
    )
    driver = src(
        f"""
        import sys
        sys.path.insert(0, {str(sandbox.PROJECT_DIR)!r})
        from pathlib import Path
        from mlestar_core.executor import Job, LocalExecutor
        LocalExecutor(workers=1, timeout=120, sandbox="bwrap").run(
            Job(code={attacker!r}, workdir=Path({str(workdir)!r}), script_name={name!r}))
        """
    )
    app = subprocess.Popen([sys.executable, "-c", driver], stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: (workdir / "pid").exists() and running(m1) and running(m2), 30)
        victims = running(m1) + running(m2) + running(name)
        assert len(victims) >= 5  # two sleepers, the script, and bwrap's two processes
        app.send_signal(signal.SIGKILL)
        app.wait()
        assert wait_until(lambda: not any(pid in victims for pid in running(m1) + running(m2) + running(name)), 5)
    finally:
        app.kill()
        app.wait()


# -- it still does its job -----------------------------------------------------------------------------


@needs_bwrap
def test_sandboxed_script_trains_with_the_ml_stack_and_writes_outputs(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    frame["target"] = (frame["a"] + frame["b"] > 0).astype(int)
    frame.iloc[:300].to_csv(data / "train.csv", index=False)
    frame.iloc[300:].drop(columns="target").to_csv(data / "test.csv", index=False)
    code = src(
        """
        import lightgbm as lgb
        import numpy as np
        import pandas as pd
        import xgboost as xgb
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        train, test = pd.read_csv("input/train.csv"), pd.read_csv("input/test.csv")
        X, y = train.drop(columns="target"), train["target"]
        oof = cross_val_predict(LogisticRegression(), X, y, cv=3, method="predict_proba")[:, 1]
        pd.DataFrame({"oof": oof}).to_csv("oof.csv", index=False)
        booster = xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(X, y)
        lgbm = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
        pred = (booster.predict_proba(test)[:, 1] + lgbm.predict_proba(test)[:, 1]) / 2
        pd.DataFrame({"target": pred}).to_csv("submission.csv", index=False)
        print(f"Final Validation Performance: {np.mean((oof > 0.5) == y):.4f}")
        """
    )
    res = sandboxed(timeout=60).run(Job(code=code, workdir=tmp_path / "w", inputs=data))
    assert res.ok, res.error_text()
    assert res.score is not None and res.score > 0.8
    assert len(pd.read_csv(tmp_path / "w" / "oof.csv")) == 300
    assert len(pd.read_csv(tmp_path / "w" / "submission.csv")) == 100


@pytest.mark.parametrize("force_python", [False, True], ids=["prlimit", "python-launcher"])
def test_rlimits_are_set_by_the_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force_python: bool) -> None:
    if force_python:
        monkeypatch.setattr(sandbox, "_prlimit", lambda: None)
    code = src(
        """
        import resource
        for name in ("AS", "CPU", "NOFILE", "FSIZE", "CORE"):
            print(name, *resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
        """
    )
    ex = LocalExecutor(workers=1, timeout=7, memory_mb=1000, threads_per_job=2, disk_mb=70, max_open_files=300)
    res = ex.run(Job(code=code, workdir=tmp_path))
    assert res.exit_code == 0, res.error_text()
    limits = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in res.stdout.splitlines()}
    cpu = 7 * 2 * 2 + 10  # timeout x threads x margin + slack
    assert limits == {"AS": (1000 * 2**20,) * 2, "CPU": (cpu, cpu + sandbox.CPU_HARD_GRACE),
                      "NOFILE": (300, 300), "FSIZE": (70 * 2**20,) * 2, "CORE": (0, 0)}


@pytest.mark.skipif(CGROUPS.pids is None, reason=f"no writable pids cgroup here: {CGROUPS.problems}")
def test_stale_cgroups_of_a_dead_app_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert CGROUPS.pids is not None
    stale = CGROUPS.pids.path / f"{sandbox.CGROUP_PREFIX}{dead.pid}-1"
    stale.mkdir()
    leftover = subprocess.Popen(["sleep", mark()])
    (stale / "cgroup.procs").write_text(str(leftover.pid))
    # A cgroup of this (live) process: a job of ours may be running in it, so the cleanup must leave it alone.
    ours = CGROUPS.pids.path / f"{sandbox.CGROUP_PREFIX}{os.getpid()}-999999"
    ours.mkdir()
    try:
        assert sandbox.cleanup_stale_cgroups() >= 1
        assert not stale.exists()
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert ours.is_dir()
    finally:
        ours.rmdir()


@pytest.mark.skipif(CGROUPS.pids is None, reason=f"no writable pids cgroup here: {CGROUPS.problems}")
def test_a_jobs_cgroup_is_removed_when_it_ends(tmp_path: Path) -> None:
    """Seen from outside while the job runs (its own /proc/self/cgroup says "/" in its cgroup namespace), its pids
    cgroup is gone once it ended (checked by name: jobs that other tests of this process may still run do not
    matter)."""
    name = f"{mark()}.py"
    found: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not found:
            for p in psutil.process_iter(["cmdline"]):
                if name in (p.info["cmdline"] or []) and "python" in (p.info["cmdline"] or [""])[0]:
                    try:
                        lines = Path(f"/proc/{p.pid}/cgroup").read_text().splitlines()
                    except OSError:
                        continue
                    found.extend(ln.split(":", 2)[2] for ln in lines if ":pids:" in ln)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with LocalExecutor(workers=1, timeout=30) as ex:
        res = ex.run(Job(code="import time\ntime.sleep(2)\nprint('Final Validation Performance: 1')\n",
                         workdir=tmp_path / "w", script_name=name))
    watcher.join()
    assert res.exit_code == 0, res.error_text()
    assert found and Path(found[0]).name.startswith(f"{sandbox.CGROUP_PREFIX}{os.getpid()}-"), found
    assert not (CGROUPS.pids.path / Path(found[0]).name).exists()


def test_cgroup_locations_are_parsed_for_v1_v2_and_container_mounts() -> None:
    hybrid = (
        "4:memory:/process_api/abc\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n",
        "35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
        "36 25 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n"
        "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
    )
    v1, v2 = sandbox.parse_cgroups(*hybrid)
    assert v1 == {"memory": Path("/sys/fs/cgroup/memory/process_api/abc"), "pids": Path("/sys/fs/cgroup/pids")}
    assert v2 == Path("/sys/fs/cgroup/unified")
    pure_v2 = ("0::/user.slice/app.scope\n",
               "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
    assert sandbox.parse_cgroups(*pure_v2) == ({}, Path("/sys/fs/cgroup/user.slice/app.scope"))
    # A container that sees its own cgroup mounted as the hierarchy's root.
    container = ("5:memory:/docker/123/sub\n",
                 "40 30 0:40 /docker/123 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n")
    assert sandbox.parse_cgroups(*container) == ({"memory": Path("/sys/fs/cgroup/memory/sub")}, None)
