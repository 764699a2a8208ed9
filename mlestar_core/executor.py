"""Run generated scripts as real subprocesses, with a time limit, a memory cap and a clean environment.

Each job runs as ``[python, script_name]`` in its own work folder and its own session (so its whole
process group can be killed), with stdin from /dev/null and stdout/stderr written to files in the
work folder. Nothing about a script's failure raises: it is all reported in an ``ExecResult``.

This is isolation by convention, not a security sandbox: the script runs as the same user, can read
the file system and reach the network. What it cannot do is inherit secrets from our environment,
outlive its time limit, or grow past its address-space cap without the result saying so.
"""

from __future__ import annotations

import logging
import math
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mlestar_core.hardening import protect_from_children
from mlestar_core.script import parse_score

log = logging.getLogger(__name__)

OUTPUT_CAP = 200_000  # bytes kept per stream (head + tail)
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_SAMPLE_INTERVAL = 0.2  # seconds between memory samples of the process tree
_CPU_COUNT = os.cpu_count() or 1

# Thread-count knobs of the numeric libraries a script may load; without them each of N parallel
# scripts would start one thread per core and they would fight over the cores.
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "MLESTAR_THREADS",
    "LOKY_MAX_CPU_COUNT",  # caps joblib/sklearn n_jobs=-1 to the job's share of the cores
)
# OpenBLAS mis-detects this machine's CPU without these; they carry no secrets.
_PASSTHROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# Checked only on a failed exit: the usual last words of a process that hit RLIMIT_AS.
_MEMORY_RE = re.compile(
    r"MemoryError|std::bad_alloc|Cannot allocate memory|out of memory|failed to allocate", re.I
)
_STDERR_SCAN = 8_000  # only the tail of stderr is searched for those words


@dataclass
class Job:
    code: str  # full Python source of the script
    workdir: Path  # created if missing; the script is written to workdir / script_name
    inputs: Path | None = None  # a folder whose files appear under workdir/"input"/<relative path>
    env: dict[str, str] = field(default_factory=dict)  # extra environment variables for this job
    timeout: float | None = None  # seconds; None -> executor default
    script_name: str = "script.py"
    label: str = ""  # free text for logs
    # Called with the stdout printed so far while the script runs; a returned reason stops it early
    # (the pipeline stops a refinement attempt that, fold by fold, can no longer catch up).
    stop_check: Callable[[str], str | None] | None = None


@dataclass
class ExecResult:
    exit_code: int | None  # None if it never started; negative = killed by that signal
    stdout: str  # capped: head and tail with a "[... N bytes cut ...]" marker
    stderr: str  # capped the same way
    score: float | None  # script.parse_score(stdout)
    wall_time: float  # seconds
    peak_memory_mb: float  # peak RSS of the script's process tree
    timed_out: bool
    memory_exceeded: bool
    killed_reason: str | None  # "timeout", "memory", "cancelled" or None
    timeout: float | None = None  # the limit that applied, for messages
    memory_mb: int | None = None  # the cap that applied, for messages
    # Set by the engine after it scored the script's predictions (evaluation.py): `score` is then the
    # engine's number, `claimed_score` what the script printed, `protocol_error` why it could not score.
    claimed_score: float | None = None
    fold_scores: list[float | None] | None = None
    protocol_error: str | None = None
    score_note: str | None = None
    early_stop: str | None = None  # why the script was stopped before it finished (Job.stop_check)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.score is not None and self.protocol_error is None

    def reason(self) -> str:
        """One sentence on why the run failed; empty when it is ok."""
        if self.exit_code == 0 and self.protocol_error:
            return f"The engine could not score the script's predictions: {self.protocol_error}"
        if self.killed_reason == "timeout":
            limit = f" after {self.timeout:g}s" if self.timeout is not None else ""
            return f"Timed out{limit}: the script and its child processes were killed."
        if self.killed_reason == "memory":
            cap = f" of {self.memory_mb} MB" if self.memory_mb is not None else ""
            return f"Memory cap{cap} exceeded: the script ran out of memory (MemoryError or killed)."
        if self.killed_reason == "cancelled":
            return "Cancelled: the run was stopped before the script finished."
        if self.killed_reason == "early_stop":
            return f"Stopped early: {self.early_stop or 'it could no longer beat its baseline'}."
        if self.exit_code is None:
            return "The script could not be started."
        if self.exit_code < 0:
            try:
                name = signal.Signals(-self.exit_code).name
            except ValueError:
                name = str(-self.exit_code)
            return f"The script was killed by signal {name}."
        if self.exit_code != 0:
            return f"The script failed with exit code {self.exit_code}."
        if self.score is None:
            return (
                "The script exited normally but no score line was printed: it must print "
                "'Final Validation Performance: <float>' (a finite number)."
            )
        return ""

    def error_text(self, limit: int = 4000) -> str:
        """The failure reason plus the tail of stderr (or of stdout if stderr is empty)."""
        reason = self.reason()
        if not reason:
            return ""
        body, label = self.stderr.strip(), "stderr"
        if not body:
            body, label = self.stdout.strip(), "stdout"
        if not body:
            return reason[:limit]
        header = f"{reason}\n--- end of {label} ---\n"
        room = limit - len(header)
        if room <= 0:
            return reason[:limit]
        return header + body[-room:]


def scrubbed_env(extra: dict[str, str] | None, workdir: Path, threads: int) -> dict[str, str]:
    """A fresh environment from an allowlist (never a copy of os.environ); creates workdir/tmp."""
    workdir = Path(workdir).absolute()
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    n = str(max(1, int(threads)))
    env = {
        "PATH": os.environ.get("PATH") or os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(workdir),
        "TMPDIR": str(tmp),
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        # glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS that reservation,
        # not real use, would make threaded libraries fail.
        "MALLOC_ARENA_MAX": "2",
        # Idle OpenMP threads spin by default; on a shared, busy machine that spinning made boosting
        # several times slower (measured with xgboost, LightGBM and HistGradientBoosting).
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    env.update(dict.fromkeys(_THREAD_VARS, n))
    for name in _PASSTHROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"environment entries must be str -> str, got {key!r}: {value!r}")
        env[key] = value
    return env


def _link_inputs(src: Path, dest: Path) -> None:
    """Symlink every file of src under dest, keeping relative paths.

    Links, not copies, because task data can be large. A script could still write through a link;
    that is acceptable because the pipeline gives each run its own copy of the task data, so such a
    write only damages that run's copy.
    """
    src = Path(src).absolute()
    if not src.is_dir():
        raise NotADirectoryError(f"job inputs must be an existing folder: {src}")
    if dest.is_dir() and not dest.is_symlink():
        # Drop links of an earlier run in this folder so removed inputs do not linger.
        # Real files the script left there are not ours to delete.
        for root, dirs, files in os.walk(dest):
            for name in files + dirs:
                path = Path(root) / name
                if path.is_symlink():
                    path.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(src):  # a linked sub-folder is linked whole, not walked
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            link = dest / rel / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            link.symlink_to(Path(root) / name)


def _read_capped(path: Path, cap: int) -> str:
    """The file's text, or its head and tail around a "[... N bytes cut ...]" marker."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size <= cap:
                return f.read().decode("utf-8", "replace")
            half = cap // 2
            head = f.read(half)
            f.seek(size - half)
            tail = f.read(half)
    except FileNotFoundError:
        return ""
    # Cut at line ends so a half line beside the marker cannot parse as a (wrong) score line.
    nl = head.rfind(b"\n")
    head = head[: nl + 1] if nl >= 0 else head + b"\n"
    nl = tail.find(b"\n")
    tail = tail[nl + 1 :] if nl >= 0 else tail
    cut = size - len(head) - len(tail)
    return head.decode("utf-8", "replace") + f"[... {cut} bytes cut ...]\n" + tail.decode("utf-8", "replace")


def _group_alive(pgid: int) -> bool:
    """Whether the process group still has a live (non-zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still answer signal 0, and orphans are not always reaped promptly by PID 1
    # (on some VMs never), so look at the members themselves.
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info.get("status") != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


class _Run:
    """Book-keeping for one job between registration and its result."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reason: str | None = None  # why we are killing it, first cause wins
        self.wake = threading.Event()  # nudges the watchdog (a kill was requested or the child exited)
        self.exited = threading.Event()
        self.pgid: int | None = None
        self.root: psutil.Process | None = None
        self.term_at: float | None = None
        self.sigkilled = False
        self.peak_rss = 0  # bytes, summed over the tree
        self.peak_vms = 0  # bytes, direct child only: that is what RLIMIT_AS bounds
        self.known: dict[int, psutil.Process] = {}  # descendants seen, to catch any that left the group
        self.early_stop: str | None = None  # the stop_check's reason, when it fired
        self.stdout_seen = -1  # stdout size at the last stop_check

    def request_kill(self, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
        self.wake.set()

    def signal(self, sig: int) -> None:
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in list(self.known.values()):
            if proc is self.root:
                continue
            try:
                # psutil refuses if the pid was reused, so this never hits a stranger.
                if os.getpgid(proc.pid) != self.pgid:
                    proc.send_signal(sig)
            except (ProcessLookupError, psutil.Error):
                pass

    def sample(self) -> None:
        if self.root is None:
            return
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for proc in procs:
            try:
                mem = proc.memory_info()
            except psutil.Error:
                continue
            rss += mem.rss
            if proc is self.root:
                self.peak_vms = max(self.peak_vms, mem.vms)
            else:
                self.known.setdefault(proc.pid, proc)
        self.peak_rss = max(self.peak_rss, rss)


def _limits(cap_bytes: int | None) -> Callable[[], None]:
    def preexec() -> None:
        # Runs in the forked child before exec: only async-signal-safe-ish calls, no imports.
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing script must not dump GBs of core

    return preexec


class LocalExecutor:
    """Runs jobs on this machine, at most `workers` at a time across all calling threads."""

    def __init__(
        self,
        workers: int = _CPU_COUNT,
        timeout: float = 300.0,
        memory_mb: int = 4096,
        threads_per_job: int | None = None,
        python: str = sys.executable,
        *,
        kill_grace: float = KILL_GRACE,
        output_cap: int = OUTPUT_CAP,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        protect_from_children()  # before any script starts: its parent's environ and memory stay closed
        self.workers = workers
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.threads_per_job = threads_per_job or max(1, _CPU_COUNT // workers)
        # A relative interpreter path would be resolved against the job's cwd, not ours.
        self.python = os.path.abspath(python) if os.sep in python else python
        self.kill_grace = kill_grace
        self.output_cap = output_cap
        self._cond = threading.Condition()
        self._runs: set[_Run] = set()  # waiting for a slot or running
        self._active = 0
        self._generation = 0  # bumped by cancel_all(); a batch started before then is cancelled
        self._closed = False

    # -- public API -------------------------------------------------------------------------------

    def run(self, job: Job) -> ExecResult:
        """Run one job to completion. Blocks while `workers` jobs are already running."""
        return self._run(job, self._generation)

    def _run(self, job: Job, generation: int) -> ExecResult:
        if self._closed:
            raise RuntimeError("LocalExecutor is closed")
        if not job.script_name or Path(job.script_name).name != job.script_name:
            raise ValueError(f"script_name must be a plain file name, got {job.script_name!r}")
        timeout = job.timeout if job.timeout is not None else self.timeout
        workdir = Path(job.workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / job.script_name).write_text(job.code, encoding="utf-8")
        if job.inputs is not None:
            _link_inputs(Path(job.inputs), workdir / "input")
        env = scrubbed_env(job.env, workdir, self.threads_per_job)

        run = _Run()
        with self._cond:
            if generation != self._generation:  # its batch was cancelled before it got here
                run.reason = "cancelled"
            self._runs.add(run)
            while self._active >= self.workers and run.reason is None:
                self._cond.wait()
            if run.reason is not None:  # cancelled while queued: never started
                self._runs.discard(run)
                return self._result(None, "", "cancelled before it started", 0.0, 0.0, run, timeout)
            self._active += 1
        try:
            return self._execute(job, run, workdir, env, timeout)
        finally:
            with self._cond:
                self._active -= 1
                self._runs.discard(run)
                self._cond.notify_all()

    def run_many(self, jobs: list[Job]) -> list[ExecResult]:
        """Run jobs in parallel (up to `workers`); results are in job order."""
        jobs = list(jobs)
        if len(jobs) <= 1:
            return [self.run(job) for job in jobs]
        # Jobs still in the pool's queue have not reached run() yet; the generation lets a
        # cancel_all() issued now reach them too.
        generation = self._generation
        with ThreadPoolExecutor(min(self.workers, len(jobs)), thread_name_prefix="mlestar-exec") as pool:
            return list(pool.map(lambda job: self._run(job, generation), jobs))

    def cancel_all(self) -> None:
        """Kill every running job's process group and drop queued ones; returns without waiting."""
        with self._cond:
            self._generation += 1
            for run in self._runs:
                run.request_kill("cancelled")
            self._cond.notify_all()

    def close(self) -> None:
        """Cancel whatever runs and refuse new jobs."""
        self.cancel_all()
        self._closed = True

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _cap_bytes(self) -> int | None:
        if not self.memory_mb or self.memory_mb <= 0:
            return None
        cap = int(self.memory_mb) * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        # The child may only lower its limits; asking above our hard limit would fail the start.
        return cap if hard == resource.RLIM_INFINITY else min(cap, hard)

    def _execute(self, job: Job, run: _Run, workdir: Path, env: dict[str, str], timeout: float) -> ExecResult:
        out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
        log.debug("starting job %s in %s", job.label or job.script_name, workdir)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    [self.python, job.script_name],
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=_limits(self._cap_bytes()),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                msg = f"could not start {self.python!r}: {type(exc).__name__}: {exc}"
                return self._result(None, "", msg, time.monotonic() - start, 0.0, run, timeout)

        run.pgid = proc.pid  # start_new_session makes the child its group's leader
        watchdog = threading.Thread(
            target=self._watch, args=(run, start, timeout, job.stop_check, out_path), name="mlestar-watchdog",
            daemon=True,
        )
        try:  # whatever happens from here on, the process group must not outlive this call
            try:
                run.root = psutil.Process(proc.pid)
            except psutil.Error:
                pass
            watchdog.start()
            # wait4 rather than Popen.wait: it also gives the child's ru_maxrss.
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            run.exited.set()
            run.wake.set()
            if watchdog.is_alive():
                watchdog.join()
            self._reap_group(run)

        # ru_maxrss is in KB on Linux but in bytes on macOS.
        maxrss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
        peak_mb = max(run.peak_rss / 2**20, maxrss)
        stdout = _read_capped(out_path, self.output_cap)
        stderr = _read_capped(err_path, self.output_cap)
        result = self._result(proc.returncode, stdout, stderr, wall, peak_mb, run, timeout)
        log.debug(
            "job %s: exit %s, score %s, %.1fs, %s",
            job.label or job.script_name,
            result.exit_code,
            result.score,
            wall,
            result.killed_reason,
        )
        return result

    def _watch(self, run: _Run, start: float, timeout: float | None,
               stop_check: Callable[[str], str | None] | None = None, out_path: Path | None = None) -> None:
        """Enforce the deadline and cancellation, sample memory and ask `stop_check`, until the child exits."""
        limited = timeout is not None and timeout > 0 and math.isfinite(timeout)
        deadline = start + timeout if limited else math.inf
        next_sample = 0.0
        while not run.exited.is_set():
            now = time.monotonic()
            if now >= deadline:
                run.request_kill("timeout")
            if run.reason is not None:
                if run.term_at is None:
                    run.term_at = now
                    run.signal(signal.SIGTERM)
                elif not run.sigkilled and now >= run.term_at + self.kill_grace:
                    run.sigkilled = True
                    run.signal(signal.SIGKILL)
            if now >= next_sample:
                try:
                    run.sample()
                except Exception:  # a failed sample must never stop deadline enforcement
                    log.exception("memory sample failed")
                if stop_check is not None and out_path is not None and run.reason is None:
                    self._ask_stop_check(run, stop_check, out_path)
                next_sample = now + _SAMPLE_INTERVAL
            wake_at = next_sample
            if run.reason is None:
                wake_at = min(wake_at, deadline)
            elif run.term_at is not None and not run.sigkilled:
                wake_at = min(wake_at, run.term_at + self.kill_grace)
            run.wake.wait(max(0.005, wake_at - time.monotonic()))
            run.wake.clear()

    def _ask_stop_check(self, run: _Run, stop_check: Callable[[str], str | None], out_path: Path) -> None:
        try:
            size = out_path.stat().st_size
        except OSError:
            return
        if size == run.stdout_seen:  # nothing new printed since the last look
            return
        run.stdout_seen = size
        try:
            why = stop_check(_read_capped(out_path, self.output_cap))
        except Exception:  # a broken predicate must never stop deadline enforcement
            log.exception("stop check failed")
            return
        if why:
            run.early_stop = why
            run.request_kill("early_stop")

    def _reap_group(self, run: _Run) -> None:
        """After the direct child exited, make sure nothing it started lives on."""
        if run.pgid is None:
            return
        if run.term_at is not None and not run.sigkilled:
            # Let the rest of the group finish handling SIGTERM, within the same grace period.
            while time.monotonic() < run.term_at + self.kill_grace and _group_alive(run.pgid):
                time.sleep(0.02)
        # Leftovers of a script that exited on its own die at once: they are orphans nobody waits for.
        run.signal(signal.SIGKILL)
        give_up = time.monotonic() + 1.0
        while time.monotonic() < give_up and _group_alive(run.pgid):
            time.sleep(0.01)

    def _result(
        self,
        exit_code: int | None,
        stdout: str,
        stderr: str,
        wall: float,
        peak_mb: float,
        run: _Run,
        timeout: float | None,
    ) -> ExecResult:
        reason = run.reason
        memory_exceeded = False
        if reason is None and exit_code not in (0, None):
            cap = self._cap_bytes()
            by_signal_near_cap = exit_code < 0 and cap is not None and run.peak_vms >= 0.9 * cap
            if _MEMORY_RE.search(stderr[-_STDERR_SCAN:]) or by_signal_near_cap:
                memory_exceeded, reason = True, "memory"
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            score=parse_score(stdout),
            wall_time=wall,
            peak_memory_mb=peak_mb,
            timed_out=reason == "timeout",
            memory_exceeded=memory_exceeded,
            killed_reason=reason,
            timeout=timeout,
            memory_mb=self.memory_mb,
            early_stop=run.early_stop if reason == "early_stop" else None,
        )
