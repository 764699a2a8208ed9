"""Run generated scripts as real subprocesses, sandboxed, with time, memory, process, file and disk limits.

Each job runs as ``[python, script_name]`` in its own work folder and its own session, with stdin
from /dev/null and stdout/stderr written to files in the work folder. Nothing about a script's
failure raises: it is all reported in an ``ExecResult``.

Where bubblewrap works (sandbox.py) the script runs in its own user, PID and network namespaces and
sees only the interpreter, its working folder and its inputs (read-only). Per-job cgroups cap the
memory and task count of the whole script tree; a small launcher sets rlimits (address space, CPU,
open files, file size, core) between fork and exec. Where a layer is missing the executor falls back
(summed-RSS watchdog, input tamper detection) and `LocalExecutor.isolation` says so in plain words.
Whatever the mode, scripts never inherit our environment's secrets and their output is scrubbed of
known secrets (hardening.scrub) before it is returned.
"""

from __future__ import annotations

import logging
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mlestar_core import sandbox as sbx
from mlestar_core.hardening import protect_from_children, scrub, scrub_file
from mlestar_core.script import parse_score

log = logging.getLogger(__name__)

OUTPUT_CAP = 200_000  # bytes kept per stream (head + tail)
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_SAMPLE_INTERVAL = 0.2  # seconds between memory samples of the process tree
_DISK_INTERVAL = 0.5  # minimal seconds between scans of the work folder's size (stretched when slow)
_CPU_COUNT = os.cpu_count() or 1
DISK_MB = 4096  # default cap on what a job may add to its work folder
MAX_PROCS = 512  # default cap on tasks (processes and threads) of a job's tree
MAX_OPEN_FILES = 4096  # default RLIMIT_NOFILE
CPU_MARGIN = 2.0  # RLIMIT_CPU = timeout x threads x this + CPU_SLACK: a backstop, never the first limit hit
CPU_SLACK = 10

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
_DISK_RE = re.compile(r"File too large|EFBIG|No space left on device|Disk quota exceeded", re.I)
_STDERR_SCAN = 8_000  # only the tail of stderr is searched for those words
_INPUT_LOCK = threading.Lock()  # chmod + snapshot of shared input folders, one job at a time
_WARNED: set[str] = set()  # isolation messages already logged


@dataclass
class Job:
    code: str  # full Python source of the script
    workdir: Path  # created if missing; the script is written to workdir / script_name
    # A folder whose files appear under workdir/"input"/<relative path>: bound read-only in the sandbox,
    # linked file by file (made read-only, writes detected) without it.
    inputs: Path | None = None
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
    # "timeout", "memory", "disk", "cpu", "cancelled", "early_stop", "tampered" (inputs changed) or None
    killed_reason: str | None
    timeout: float | None = None  # the limit that applied, for messages
    memory_mb: int | None = None  # the cap that applied, for messages
    # Set by the engine after it scored the script's predictions (evaluation.py): `score` is then the
    # engine's number, `claimed_score` what the script printed, `protocol_error` why it could not score.
    claimed_score: float | None = None
    fold_scores: list[float | None] | None = None
    protocol_error: str | None = None
    score_note: str | None = None
    early_stop: str | None = None  # why the script was stopped before it finished (Job.stop_check)
    disk_mb: int | None = None  # the disk cap that applied, for messages
    tampered_inputs: list[str] | None = None  # input files the script changed (killed_reason "tampered")
    sandbox: str | None = None  # "bwrap" or "none": how the script was isolated
    # Links out of the work folder (and FIFOs/sockets) the script left, removed before anyone reads its outputs
    removed_links: list[str] | None = None

    @property
    def ok(self) -> bool:
        return (self.exit_code == 0 and self.score is not None and self.protocol_error is None
                and self.killed_reason is None)

    def reason(self) -> str:
        """One sentence on why the run failed; empty when it is ok."""
        if self.killed_reason == "tampered":
            files = ", ".join(self.tampered_inputs or []) or "unknown files"
            return (f"The script changed its read-only input files ({files}): its result is not trusted "
                    "and the run's data may be damaged.")
        if self.killed_reason == "disk":
            cap = f" of {self.disk_mb} MB" if self.disk_mb is not None else ""
            return (f"Disk cap{cap} exceeded: the script wrote too much into its working folder "
                    "(or a file larger than the cap) and was stopped.")
        if self.exit_code == 0 and self.protocol_error:
            return f"The engine could not score the script's predictions: {self.protocol_error}"
        if self.killed_reason == "timeout":
            limit = f" after {self.timeout:g}s" if self.timeout is not None else ""
            return f"Timed out{limit}: the script and its child processes were killed."
        if self.killed_reason == "memory":
            cap = f" of {self.memory_mb} MB" if self.memory_mb is not None else ""
            return f"Memory cap{cap} exceeded: the script ran out of memory (MemoryError or killed)."
        if self.killed_reason == "cpu":
            return ("CPU time limit exceeded: the script used more CPU seconds than its time limit and thread "
                    "count allow (RLIMIT_CPU) and was killed.")
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


def _clear_links(dest: Path) -> None:
    """Drop the links an earlier run left under dest; real files a script left there are not ours to delete."""
    for root, dirs, files in os.walk(dest):
        for name in files + dirs:
            path = Path(root) / name
            if path.is_symlink():
                path.unlink()


def _link_inputs(src: Path, dest: Path) -> None:
    """Symlink every file of src under dest, keeping relative paths (the fallback without a sandbox).

    Links, not copies, because task data can be large. A script could write through a link, so the
    caller makes the files read-only and compares snapshots before and after (`_snapshot`).
    """
    src = Path(src).absolute()
    if not src.is_dir():
        raise NotADirectoryError(f"job inputs must be an existing folder: {src}")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()  # a script may have replaced the folder by a link to elsewhere
    if dest.is_dir():
        _clear_links(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(src):  # a linked sub-folder is linked whole, not walked
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            link = dest / rel / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            link.symlink_to(Path(root) / name)


def _mount_point(src: Path, dest: Path) -> None:
    """An empty folder at dest for the sandbox's read-only bind of src (what the host sees stays empty)."""
    if not Path(src).is_dir():
        raise NotADirectoryError(f"job inputs must be an existing folder: {Path(src).absolute()}")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()
    if dest.is_dir():
        _clear_links(dest)  # links of a fallback-mode run in the same folder
    dest.mkdir(parents=True, exist_ok=True)


def _make_read_only(folder: Path) -> None:
    """Drop the write bits of every input file (no-op when already done, so ctimes stay put)."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
                if stat.S_ISREG(mode) and mode & 0o222:
                    path.chmod(stat.S_IMODE(mode) & ~0o222)
            except OSError:
                pass


_Snapshot = dict[str, tuple[int, int, int, int, int]]


def _snapshot(folder: Path) -> _Snapshot:
    """(inode, size, mtime, ctime, mode) of everything under folder: cheap, and any write, replace,
    chmod or even a write followed by a restored mtime changes it (ctime cannot be set by a user)."""
    out: _Snapshot = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            out[str(path.relative_to(folder))] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
    return out


def _warn_outside_links(folder: Path, snap: _Snapshot) -> None:
    """Links in the inputs that lead out of them dangle in the sandbox (only the folder is bound)."""
    root = folder.resolve()
    for rel, info in snap.items():
        if stat.S_ISLNK(info[4]) and not (folder / rel).resolve().is_relative_to(root):
            log.warning("input %s links out of %s: the sandboxed script cannot follow it", rel, folder)


def _changed(before: _Snapshot, after: _Snapshot) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _defuse(workdir: Path, skip: Path | None) -> list[str]:
    """Remove links leading out of the work folder, and FIFOs/sockets, that a script left there.

    The engine reads the script's outputs (submission.csv, oof.csv) from the host side after the run.
    A script cannot read the hold-out answers from inside the sandbox, but it could leave
    `submission.csv -> /abs/path/runs/<id>/data/holdout_answers.csv` for the engine to follow, or a
    FIFO that blocks the engine's read forever. Only its own folder's regular files may stay.
    """
    removed: list[str] = []
    root = workdir.resolve()
    for dirpath, dirs, files in os.walk(workdir):
        here = Path(dirpath)
        if skip is not None and here == skip:
            dirs[:] = []
            continue
        for name in files + dirs:
            path = here / name
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    if path.resolve().is_relative_to(root):
                        continue
                elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                    continue
                path.unlink()
                removed.append(str(path.relative_to(workdir)))
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop
                try:
                    path.unlink()
                    removed.append(str(path.relative_to(workdir)))
                except OSError:
                    pass
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return removed


def _disk_usage(folder: Path) -> int:
    """Bytes under folder, not following links: blocks for dense files, the size for sparse ones."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += max(st.st_size, st.st_blocks * 512)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


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


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
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
        self.sandboxed = False  # root is the outer bwrap; its children are bwrap's PID-1 in the namespace
        self.cgroup: sbx.JobCgroup | None = None
        self.memory_cap: int | None = None  # bytes; enforced here by summed RSS when no memory cgroup
        self.disk_cap: int | None = None  # bytes the work folder may grow by
        self.disk_base = 0
        self.disk_peak = 0  # bytes added to the work folder, largest seen
        self.workdir: Path | None = None
        self.term_at: float | None = None
        self.sigkilled = False
        self.peak_rss = 0  # bytes, summed over the tree
        self.peak_vms = 0  # bytes, largest single process: that is what RLIMIT_AS bounds
        self.known: dict[int, psutil.Process] = {}  # descendants seen, to catch any that left the group
        self.early_stop: str | None = None  # the stop_check's reason, when it fired
        self.stdout_seen = -1  # stdout size at the last stop_check

    def request_kill(self, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
        self.wake.set()

    def _bwrap_pids(self) -> set[int]:
        """The outer bwrap and its direct child (the namespace's init): not the script's own processes."""
        if self.root is None:
            return set()
        try:
            return {self.root.pid, *(p.pid for p in self.root.children())}
        except psutil.Error:
            return {self.root.pid}

    def targets(self) -> list[psutil.Process]:
        """Every process of the tree we know of: current descendants, ones seen before, the cgroup's."""
        found: dict[int, psutil.Process] = dict(self.known)
        if self.root is not None and not self.exited.is_set():
            # Once the direct child is reaped its descendants are orphans (reparented): only the
            # cgroup, the process group and the ones we saw before can find them, so skip the scan.
            found[self.root.pid] = self.root
            try:
                found.update((p.pid, p) for p in self.root.children(recursive=True))
            except psutil.Error:
                pass
        if self.cgroup is not None:
            for pid in self.cgroup.pids():
                if pid not in found:
                    try:
                        found[pid] = psutil.Process(pid)
                    except psutil.Error:
                        pass
        return list(found.values())

    def signal(self, sig: int) -> None:
        if self.sandboxed and sig != signal.SIGKILL:
            # A graceful signal goes to the script's processes only: SIGTERM would kill the outer bwrap at
            # once, and its death SIGKILLs the whole namespace, leaving the script no time to clean up.
            skip = self._bwrap_pids()
            for proc in self.targets():
                if proc.pid not in skip:
                    self._send(proc, sig)
            return
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.targets():
            try:
                if proc is self.root or os.getpgid(proc.pid) == self.pgid:
                    continue
            except (ProcessLookupError, psutil.Error, OSError):
                continue
            self._send(proc, sig)

    @staticmethod
    def _send(proc: psutil.Process, sig: int) -> None:
        try:
            proc.send_signal(sig)  # psutil refuses if the pid was reused, so this never hits a stranger
        except (ProcessLookupError, psutil.Error):
            pass

    def alive(self) -> bool:
        """Whether anything of the job still runs (zombies do not count)."""
        if not self.sandboxed and self.cgroup is None and self.pgid is not None and _group_alive(self.pgid):
            return True
        return any(_live(p) for p in self.targets())

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
            self.peak_vms = max(self.peak_vms, mem.vms)
            if proc is not self.root:
                self.known.setdefault(proc.pid, proc)
        self.peak_rss = max(self.peak_rss, rss)
        if self.memory_cap and self.reason is None:
            if self.cgroup is not None and self.cgroup.memory_kind:
                # The kernel enforces the cap; an OOM kill in the job's cgroup ends the whole job.
                if self.cgroup.oom_kills() > 0:
                    self.request_kill("memory")
            elif rss > self.memory_cap:  # no memory cgroup: the summed RSS of the tree is the cap
                self.request_kill("memory")

    def check_disk(self) -> None:
        if self.workdir is None or not self.disk_cap:
            return
        grown = _disk_usage(self.workdir) - self.disk_base
        self.disk_peak = max(self.disk_peak, grown)
        if grown > self.disk_cap and self.reason is None:
            self.request_kill("disk")


class LocalExecutor:
    """Runs jobs on this machine, at most `workers` at a time across all calling threads.

    `sandbox`: "auto" (bubblewrap when it works here, else the fallback, said plainly in `isolation`),
    "bwrap" (required: raises RuntimeError when unavailable) or "none"; None reads $MLESTAR_SANDBOX.
    `disk_mb` caps what a job may add to its work folder (and each file's size), `max_procs` the tasks
    of its tree, `max_open_files` its open files; None or 0 leaves that limit off. `network=True` keeps
    the host's network inside the sandbox; `cgroups=False` never uses cgroups (summed-RSS memory cap).
    """

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
        sandbox: str | None = None,
        disk_mb: int | None = DISK_MB,
        max_procs: int | None = MAX_PROCS,
        max_open_files: int | None = MAX_OPEN_FILES,
        network: bool = False,
        cgroups: bool = True,
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
        self.disk_mb = disk_mb
        self.max_procs = max_procs
        self.max_open_files = max_open_files
        self.network = network
        # Probed once per process; an explicit sandbox="bwrap" that cannot work raises here.
        self.isolation: sbx.SandboxStatus = sbx.build_status(sbx.resolve_mode(sandbox), use_cgroups=cgroups,
                                                             network=network)
        self._cgroups = sbx.probe_cgroups() if cgroups else sbx.CgroupSupport()
        if not self.isolation.fully_enforced and self.isolation.message not in _WARNED:
            _WARNED.add(self.isolation.message)  # once per process, not once per run
            log.warning("script isolation: %s", self.isolation.message)
        self._cond = threading.Condition()
        self._runs: set[_Run] = set()  # waiting for a slot or running
        self._active = 0
        self._generation = 0  # bumped by cancel_all(); a batch started before then is cancelled
        self._closed = False

    @property
    def sandboxed(self) -> bool:
        return self.isolation.sandboxed

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
            if self.sandboxed:
                _mount_point(Path(job.inputs), workdir / "input")
            else:
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

    def _disk_bytes(self) -> int | None:
        return int(self.disk_mb) * 2**20 if self.disk_mb and self.disk_mb > 0 else None

    def _limits(self, timeout: float | None, cgroup: sbx.JobCgroup | None) -> sbx.Limits:
        cpu = None
        if timeout is not None and timeout > 0 and math.isfinite(timeout):
            # A backstop for when the app cannot enforce the timeout (it died, or a process escaped the
            # tree): twice the CPU the job's threads could use in its time, so it never fires first.
            cpu = math.ceil(timeout * max(1, self.threads_per_job) * CPU_MARGIN) + CPU_SLACK
        nproc = None
        if self.max_procs and (cgroup is None or "pids" not in cgroup.folders) and not sbx.is_root():
            # RLIMIT_NPROC counts all processes of the user, so allow what the user already runs on top.
            me = os.getuid()
            running = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == me)
            nproc = running + int(self.max_procs)
        return sbx.Limits(address_space=self._cap_bytes(), cpu_seconds=cpu, open_files=self.max_open_files or None,
                          file_size=self._disk_bytes(), processes=nproc)

    def _resolve_python(self) -> str | None:
        """The interpreter's absolute path, or None when it cannot be found/executed."""
        path = self.python if os.sep in self.python else shutil.which(self.python)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return None

    def _execute(self, job: Job, run: _Run, workdir: Path, env: dict[str, str], timeout: float) -> ExecResult:
        out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
        log.debug("starting job %s in %s", job.label or job.script_name, workdir)
        start = time.monotonic()
        python = self._resolve_python()
        if python is None:
            out_path.write_bytes(b"")
            err_path.write_bytes(b"")
            msg = f"could not start {self.python!r}: no such executable interpreter"
            return self._result(None, "", msg, time.monotonic() - start, 0.0, run, timeout)
        command = [python, job.script_name]
        fds: list[int] = []
        snapshot: _Snapshot | None = None
        inputs = Path(job.inputs).absolute() if job.inputs is not None else None
        try:
            if inputs is not None:
                with _INPUT_LOCK:  # a parallel job's chmod must not change ctimes after our snapshot
                    if not self.sandboxed:
                        _make_read_only(inputs)
                    snapshot = _snapshot(inputs)
            if self.sandboxed:
                if sbx.PROJECT_DIR.is_relative_to(workdir.resolve()):
                    log.warning("job %s: its work folder %s contains the project folder, which it can then "
                                "read and write", job.label or job.script_name, workdir)
                if inputs is not None and snapshot is not None:
                    _warn_outside_links(inputs, snapshot)
                try:
                    layout = sbx.interpreter_layout(python)
                except OSError as exc:
                    return self._result(None, "", f"could not start {self.python!r}: {exc}",
                                        time.monotonic() - start, 0.0, run, timeout)
                passwd, group = sbx.account_files(workdir)
                fds = [sbx.data_pipe(passwd), sbx.data_pipe(group)]
                command = sbx.bwrap_argv(layout, workdir, inputs, command, passwd_fd=fds[0], group_fd=fds[1],
                                         network=self.network)
            run.sandboxed = self.sandboxed
            run.memory_cap = self._cap_bytes()
            run.disk_cap = self._disk_bytes()
            run.workdir = workdir
            if self._cgroups.memory or self._cgroups.pids:
                try:
                    run.cgroup = sbx.JobCgroup.create(self._cgroups, run.memory_cap, self.max_procs)
                except OSError as exc:  # said in the log; the summed-RSS watchdog takes over for this job
                    log.warning("could not create the job's cgroup (%s); memory is capped by summed RSS", exc)
            if run.disk_cap:
                run.disk_base = _disk_usage(workdir)
            argv = sbx.launcher_argv(command, self._limits(timeout, run.cgroup),
                                     run.cgroup.procs_files if run.cgroup else (),
                                     parent_death=not self.sandboxed)  # bwrap sets its own
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                start = time.monotonic()
                try:
                    proc = subprocess.Popen(
                        argv,
                        cwd=workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                        close_fds=True,
                        pass_fds=fds,
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    msg = f"could not start {self.python!r}: {type(exc).__name__}: {exc}"
                    return self._result(None, "", msg, time.monotonic() - start, 0.0, run, timeout)
            for fd in fds:
                os.close(fd)
            fds = []
            return self._supervise(job, run, proc, start, timeout, out_path, err_path, inputs, snapshot)
        finally:
            for fd in fds:
                os.close(fd)
            if run.cgroup is not None:
                run.cgroup.remove()

    def _supervise(self, job: Job, run: _Run, proc: subprocess.Popen[bytes], start: float, timeout: float,
                   out_path: Path, err_path: Path, inputs: Path | None, snapshot: _Snapshot | None) -> ExecResult:
        run.pgid = proc.pid  # start_new_session makes the child its group's leader
        watchdog = threading.Thread(
            target=self._watch, args=(run, start, timeout, job.stop_check, out_path), name="mlestar-watchdog",
            daemon=True,
        )
        try:  # whatever happens from here on, the process tree must not outlive this call
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

        exit_code = proc.returncode
        if run.sandboxed and 128 < exit_code <= 128 + 64:
            # bwrap reports a command killed by signal N as exit code 128 + N, like a shell.
            exit_code = -(exit_code - 128)
        # ru_maxrss is in KB on Linux but in bytes on macOS.
        maxrss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
        peak_mb = max(run.peak_rss / 2**20, maxrss)
        if run.disk_cap:
            run.check_disk()  # a fast writer may have finished between two scans
        if run.cgroup is not None and run.cgroup.memory_kind and run.cgroup.oom_kills() > 0 and run.reason is None:
            run.reason = "memory"
        tampered: list[str] | None = None
        if inputs is not None and snapshot is not None:
            tampered = _changed(snapshot, _snapshot(inputs))[:20] or None
            if tampered:
                run.reason = "tampered"  # outranks any other cause: the run's data can no longer be trusted
                log.warning("job %s changed its inputs: %s", job.label or job.script_name, ", ".join(tampered))
        # Our own input links (fallback mode) point out of the folder on purpose; the rest may not.
        removed = _defuse(run.workdir or out_path.parent, None if run.sandboxed else out_path.parent / "input")
        if removed:
            log.warning("job %s left links/special files pointing out of its folder, removed: %s",
                        job.label or job.script_name, ", ".join(removed[:20]))
        for path in (out_path, err_path):
            scrub_file(path)
        stdout = _read_capped(out_path, self.output_cap)
        stderr = _read_capped(err_path, self.output_cap)
        result = self._result(exit_code, stdout, stderr, wall, peak_mb, run, timeout)
        result.tampered_inputs = tampered
        result.removed_links = removed[:20] or None
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
        """Enforce the deadline, cancellation, memory and disk caps, and ask `stop_check`, until the child exits."""
        limited = timeout is not None and timeout > 0 and math.isfinite(timeout)
        deadline = start + timeout if limited else math.inf
        next_sample = 0.0
        next_disk = time.monotonic() + 0.1
        disk_every = _DISK_INTERVAL
        while not run.exited.is_set():
            now = time.monotonic()
            if now >= deadline:
                run.request_kill("timeout")
            if run.reason is not None:
                if run.term_at is None:
                    run.term_at = now
                    # Over a cap the tree is killed outright: SIGTERM would give it time to grow further.
                    hard = run.reason in ("memory", "disk")
                    run.sigkilled = hard
                    run.signal(signal.SIGKILL if hard else signal.SIGTERM)
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
            if run.disk_cap and now >= next_disk and run.reason is None:
                t0 = time.monotonic()
                try:
                    run.check_disk()
                except Exception:
                    log.exception("disk scan failed")
                # A folder with very many files must not turn the watchdog into a disk scanner.
                disk_every = max(_DISK_INTERVAL, 20 * (time.monotonic() - t0))
                next_disk = time.monotonic() + disk_every
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
            # Let the rest of the tree finish handling SIGTERM, within the same grace period.
            while time.monotonic() < run.term_at + self.kill_grace and run.alive():
                time.sleep(0.02)
        # Leftovers of a script that exited on its own die at once: they are orphans nobody waits for.
        # (In the sandbox the kernel already killed them with the namespace's init.)
        run.signal(signal.SIGKILL)
        give_up = time.monotonic() + 1.0
        while time.monotonic() < give_up and run.alive():
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
        if reason is None and exit_code not in (0, None):
            cap = self._cap_bytes()
            by_signal_near_cap = exit_code < 0 and cap is not None and run.peak_vms >= 0.9 * cap
            tail = stderr[-_STDERR_SCAN:]
            if _MEMORY_RE.search(tail) or by_signal_near_cap:
                reason = "memory"
            elif self._disk_bytes() and (_DISK_RE.search(tail) or exit_code == -signal.SIGXFSZ):
                reason = "disk"  # a single file hit RLIMIT_FSIZE (Python ignores SIGXFSZ and raises EFBIG)
            elif exit_code == -signal.SIGXCPU:
                reason = "cpu"
        return ExecResult(
            exit_code=exit_code,
            stdout=scrub(stdout),
            stderr=scrub(stderr),
            score=parse_score(stdout),
            wall_time=wall,
            peak_memory_mb=peak_mb,
            timed_out=reason == "timeout",
            memory_exceeded=reason == "memory",
            killed_reason=reason,
            timeout=timeout,
            memory_mb=self.memory_mb,
            early_stop=run.early_stop if reason == "early_stop" else None,
            disk_mb=self.disk_mb,
            sandbox=self.isolation.mode,
        )
